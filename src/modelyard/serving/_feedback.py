"""``POST /v1/feedback``: delayed labels by request id, for quality monitoring.

A label is accepted only for a request this server logged, and only if its type
matches the model's ``prediction`` output; it is written with the same crash-safe
writer as predictions before the 200 leaves.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from modelyard.errors import FieldError, InvalidInputError, NotFoundError, SchemaValidationError
from modelyard.monitoring import PredictionLog
from modelyard.monitoring._quality import label_line
from modelyard.serving._http import json_response, read_body, request_id
from modelyard.serving._pool import ModelPool

_CHECK = {
    "int64": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float64": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
}


def _items(body: bytes) -> list[dict[str, Any]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"body is not valid JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise SchemaValidationError(
                [FieldError("body", 'send {"request_id": ..., "label": ...} or a list of them', i)]
            )
    return items


def add_feedback_route(app: FastAPI, pool: ModelPool, labels: PredictionLog) -> None:
    limit: int = app.state.max_body_bytes

    @app.post("/v1/feedback", tags=["monitoring"])
    async def feedback(request: Request) -> Response:
        """Labels for earlier predictions: ``{"request_id", "label", "row"?}`` or a list."""
        log = pool.log
        if log is None:
            raise NotFoundError(
                "this server does not log predictions; start it without "
                "--no-log-predictions to accept feedback"
            )
        items = _items(await read_body(request, limit))
        lines = []
        errors: list[FieldError] = []
        now = time.time_ns() // 1000
        for i, item in enumerate(items):
            rid, row = str(item["request_id"]), item.get("row", 0)
            # Recent ids are in memory; an older one means scanning the log, off the loop.
            found = log.recent(rid) or await run_in_threadpool(log.lookup, rid)
            if found is None:
                errors.append(
                    FieldError(
                        "request_id",
                        f"no prediction has request id {rid!r}; "
                        "send the id the prediction's response carried",
                        i,
                    )
                )
                continue
            model, rows = found
            if not isinstance(row, int) or not 0 <= row < rows:
                errors.append(
                    FieldError(
                        "row", f"request {rid!r} had {rows} rows; row must be 0..{rows - 1}", i
                    )
                )
                continue
            dtype = _prediction_dtype(pool, model)
            if dtype is not None and not _CHECK.get(dtype, lambda v: True)(item["label"]):
                errors.append(
                    FieldError(
                        "label",
                        f"model '{model}' predicts {dtype} values; "
                        f"got {type(item['label']).__name__}",
                        i,
                    )
                )
                continue
            lines.append(label_line(rid, item["label"], row, now, model))
        if errors:
            raise SchemaValidationError(errors, what="feedback")
        await labels.append(b"".join(lines))
        return json_response({"accepted": len(lines)}, 200, request_id(request))


def _prediction_dtype(pool: ModelPool, model: str) -> str | None:
    deployment = pool.deployments.get(model)
    if deployment is None:
        return None
    outputs = deployment.served.model.version.signature.outputs
    return outputs["prediction"].dtype if "prediction" in outputs.names else None
