"""``POST /v1/models/NAME/predict``: JSON records in, predictions out (see ``_fast.py``).

The body is parsed and checked in one pass by the signature's compiled validator
(``contracts/_validate.py``), not by a pydantic model built per request; errors keep our
stable shape (``code``, ``message``, ``request_id``, one entry per bad field).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from modelyard.errors import ModelyardError, OverloadedError
from modelyard.serving._deployment import Inference
from modelyard.serving._fast import Call, ClientGone, Handler, Reply, json_reply
from modelyard.serving._limits import (
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_STRING_LENGTH,
    too_many_rows,
)
from modelyard.serving._multipart import image_records, is_image, is_multipart
from modelyard.serving._multipart import records_of as multipart_records
from modelyard.serving._pool import ModelPool

logger = logging.getLogger("modelyard.serving")


def error_reply(exc: ModelyardError, rid: str, extra: dict[str, Any] | None = None) -> Reply:
    """Our error shape; ``extra`` adds protocol fields (OIP's ``error``)."""
    payload = {**exc.to_dict(), **(extra or {}), "request_id": rid}
    return json_reply(payload, exc.status, rid, getattr(exc, "headers", None))


def failure_reply(name: str, rid: str, oip: bool = False) -> Reply:
    """A model that raised on this input: 500, the details only in the log."""
    logger.exception("prediction failed", extra={"model": name, "request_id": rid})
    message = f"model '{name}' failed on this input; the error is logged with this request_id"
    payload: dict[str, Any] = {"code": "prediction_failed", "message": message}
    if oip:
        payload["error"] = message
    payload["request_id"] = rid
    return json_reply(payload, 500, rid)


def predict_handler(
    pool: ModelPool,
    limit: int,
    max_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
) -> Handler:
    """``limit``: the body's bytes; ``max_rows`` and ``max_string_length``: ``_limits.py``."""

    async def predict(call: Call, params: dict[str, str]) -> Reply:
        started = time.perf_counter()
        name = params["name"]
        done = pool.observe(name, "v1")
        rid = call.request_id
        result: Inference | None = None
        status = 200
        shed = False
        try:
            deployment = pool.get(name)  # the 404 that lists what is served
            body = await call.body(limit)
            served = deployment.served
            content_type = call.header(b"content-type")
            if is_multipart(content_type) or is_image(content_type):
                assert content_type is not None  # file uploads: curl -F image=@digit.png
                records = (
                    multipart_records(body, content_type, served.request_schema)
                    if is_multipart(content_type)
                    else image_records(body, served.tensor_inputs)
                )
                columns = served.validator.validate_python(
                    records, max_string_length=max_string_length
                )
                many = len(records) > 1
            else:
                columns, many = served.validator.validate_json(
                    body, max_string_length=max_string_length
                )
            rows = len(next(iter(columns.values()))) if columns else 0
            if rows > max_rows:
                raise too_many_rows(rows, max_rows)
            result = await deployment.infer(columns, rows, rid, call.routed, call.alone())
            records = records_of(result.outputs)
            payload: dict[str, Any] = {
                "model": name,
                "version": result.version,
                "variant": result.variant,
                "request_id": rid,
            }
            if many:
                payload["predictions"] = records
            else:
                payload["prediction"] = records[0]
            return json_reply(payload, 200, rid)
        except ClientGone:
            status = ClientGone.status
            return Reply(status, b"", rid)
        except ModelyardError as exc:
            status, shed = exc.status, isinstance(exc, OverloadedError)
            return error_reply(exc, rid)
        except Exception:
            status = 500
            return failure_reply(name, rid)
        finally:
            done(rid, status, result, started, shed)

    return predict


def refusal_handler(pool: ModelPool) -> Handler:
    """The answer to a request its model's admission refused (``_admission.py``) when the
    protocol did not answer it first (a test client, another server): 503 at once, without
    reading the body or touching the model; counted, not logged."""

    async def refuse(call: Call, params: dict[str, str]) -> Reply:
        rid = call.request_id
        body = pool.admission.refusal(params["name"], call.scope["path"].startswith("/v2/"), rid)
        return Reply(503, body, rid, headers=dict(OverloadedError.headers))

    return refuse


def records_of(columns: dict[str, Any]) -> list[dict[str, Any]]:
    names = list(columns)
    values = [v.tolist() if hasattr(v, "tolist") else list(v) for v in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
