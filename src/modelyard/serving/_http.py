"""Small HTTP helpers shared by the server's routes: request ids, JSON replies, body limit."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from modelyard.errors import ModelyardError, PayloadTooLargeError

_JSON = "application/json"


def request_id(request: Request) -> str:
    """The caller's ``X-Request-ID`` when given, else a new one (stable per request)."""
    rid: str | None = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
    return rid


def json_response(
    payload: Any, status: int = 200, rid: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    all_headers = {"x-request-id": rid} if rid else {}
    if headers:
        all_headers.update(headers)
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type=_JSON, headers=all_headers or None)


def error_json(request: Request, exc: ModelyardError) -> Response:
    rid = request_id(request)
    return json_response({**exc.to_dict(), "request_id": rid}, exc.status, rid)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than {limit} bytes; send fewer rows per request "
        "or raise --max-body-bytes"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
