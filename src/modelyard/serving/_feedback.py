"""``POST /v1/feedback``: delayed labels by request id, for quality monitoring.

A label is accepted only for a request the prediction log holds (answered by this
replica or, once shipped, by any replica that shares the log's store), and only if
its type matches the model's ``prediction`` output; it is written with the same
crash-safe writer as predictions before the 200 leaves. Request ids are looked up
all at once: in memory, then this host's spool, then the store's request index,
never by reading the predictions themselves.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from modelyard.backends.predictions import PredictionLog
from modelyard.errors import (
    FieldError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    SchemaValidationError,
)
from modelyard.serving._auth import may_label
from modelyard.serving._http import json_response, read_body, request_id
from modelyard.serving._openapi import errors, json_ok
from modelyard.serving._pool import ModelPool

MAX_ITEMS = 10_000
_ACCEPTED = {"type": "object", "properties": {"accepted": {"type": "integer"}}}

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
    if len(items) > MAX_ITEMS:
        raise PayloadTooLargeError(
            f"the body holds {len(items)} labels; send at most {MAX_ITEMS} per request"
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise SchemaValidationError(
                [FieldError("body", 'send {"request_id": ..., "label": ...} or a list of them', i)]
            )
    return items


def add_feedback_route(app: FastAPI, pool: ModelPool) -> None:
    limit: int = app.state.max_body_bytes

    label = {
        "type": "object",
        "required": ["request_id", "label"],
        "properties": {
            "request_id": {"type": "string"},
            "label": {"type": ["string", "number", "boolean"]},
            "row": {"type": "integer", "minimum": 0},
        },
    }
    body = {"oneOf": [label, {"type": "array", "items": label}]}
    example = {"request_id": "the request_id of a prediction", "label": "its true label"}

    @app.post(
        "/v1/feedback",
        tags=["monitoring"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body, "example": example}},
            }
        },
        responses={
            200: json_ok("the labels are kept", _ACCEPTED),
            **errors(400, 404, 413, 415, 422, 503),
        },
    )
    async def feedback(request: Request) -> Response:
        """Labels for earlier predictions: ``{"request_id", "label", "row"?}`` or a list."""
        log = pool.log
        if log is None:
            raise NotFoundError(
                "this server does not log predictions; start it without "
                "--no-log-predictions to accept feedback"
            )
        items = _items(await read_body(request, limit))
        ids = [str(item["request_id"]) for item in items]
        known = {rid: found for rid in ids if (found := log.recent(rid)) is not None}
        unknown = sorted({rid for rid in ids if rid not in known})
        if unknown:  # older requests, or another replica's: I/O, off the event loop
            known.update(await run_in_threadpool(log.lookup, unknown))
        # A key limited to some models cannot label, or learn of, another model's requests.
        known = {rid: found for rid, found in known.items() if may_label(request.scope, found[0])}
        lines = []
        errors: list[FieldError] = []
        for i, (item, rid) in enumerate(zip(items, ids, strict=True)):
            problem = _problem(pool, log, item, rid, known.get(rid))
            if problem is not None:
                errors.append(FieldError(problem[0], problem[1], i))
            else:
                row, model = item.get("row", 0), known[rid][0]
                lines.append(PredictionLog.label_line(rid, item["label"], row, model))
        if errors:
            raise SchemaValidationError(errors, what="feedback")
        await log.append_labels(b"".join(lines))
        return json_response({"accepted": len(lines)}, 200, request_id(request))


def _problem(
    pool: ModelPool,
    log: PredictionLog,
    item: dict[str, Any],
    rid: str,
    found: tuple[str, int] | None,
) -> tuple[str, str] | None:
    """(field, message) of what is wrong with one label, or None."""
    if found is None:
        return "request_id", (
            f"no prediction has request id {rid!r} in the last {log.feedback_days} days; "
            "send the id the prediction's response carried (another replica's predictions "
            f"are known here within {log.max_delay_s:g} s of their answer)"
        )
    model, rows = found
    if "row" not in item and rows > 1:
        # Row 0 by default would file the label under whichever record came first.
        return "row", (
            f"request {rid!r} had {rows} rows; send row (0..{rows - 1}) to say which "
            "prediction this label is for"
        )
    row = item.get("row", 0)
    if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < rows:
        return "row", f"request {rid!r} had {rows} rows; row must be 0..{rows - 1}"
    dtype, classes = _prediction_kind(pool, model)
    label = item["label"]
    if dtype is not None and not _CHECK.get(dtype, lambda v: True)(label):
        hint = f"; send it as a string, e.g. {json.dumps(str(label))}" if dtype == "string" else ""
        return (
            "label",
            f"model '{model}' predicts {dtype} values; got {type(label).__name__}{hint}",
        )
    if classes and str(label) not in classes:
        # An unknown class would quietly turn AUC and calibration off in quality reports.
        return "label", f"model '{model}' predicts one of {', '.join(classes)}; got {label!r}"
    return None


def _prediction_kind(pool: ModelPool, model: str) -> tuple[str | None, list[str]]:
    """(dtype of the ``prediction`` output, the classes of a classifier's probabilities)."""
    deployment = pool.deployments.get(model)
    if deployment is None:
        return None, []
    outputs = deployment.served.model.version.signature.outputs
    dtype = outputs["prediction"].dtype if "prediction" in outputs.names else None
    prefix = "probability_"
    return dtype, [n[len(prefix) :] for n in outputs.names if n.startswith(prefix)]
