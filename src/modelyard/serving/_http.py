"""Small HTTP helpers shared by the server's routes: request ids, JSON replies, the body.

The body is read by hand (``read_asgi_body``) rather than with ``Request.stream()``: it
must be bounded in size and in time, and a timer per request costs about 3 us
(``asyncio.timeout`` arms and cancels one). Nearly every body is already in when a route
asks for it, so ``receive()`` is first run without a timer, and only a ``receive()``
that would wait continues under one.
"""

from __future__ import annotations

import asyncio
import math
import types
from collections.abc import Generator
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope

from modelyard.errors import ModelyardError, PayloadTooLargeError, RequestTimeoutError
from modelyard.serving._request_ids import ids_of

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "body_timeout_s",
    "error_json",
    "header",
    "json_response",
    "read_asgi_body",
    "read_body",
    "request_id",
    "set_body_timeout",
]

_JSON = "application/json"
DEFAULT_BODY_TIMEOUT_S = 30.0
_body_timeout_s = DEFAULT_BODY_TIMEOUT_S


def set_body_timeout(seconds: float) -> None:
    """Set this process's body read timeout (``modelyard serve --body-timeout``)."""
    global _body_timeout_s
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"body timeout must be a positive number of seconds, not {seconds}")
    _body_timeout_s = seconds


def body_timeout_s() -> float:
    """Seconds a request's body may take to arrive, in this process."""
    return _body_timeout_s


def header(scope: Scope, name: bytes) -> str | None:
    """The value of header ``name`` (lower case), read from the ASGI scope.

    About 0.3 us, where ``request.headers.get`` builds a ``Headers`` first (about 1 us).
    """
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_id(request: Request, fallback: str | None = None) -> str:
    """The request's id (see ``_request_ids``): assigned on first use, then the same.

    ``fallback`` is the client's id from elsewhere (an OIP body's ``id``), used when the
    request has no ``X-Request-ID``; only the first call can use it.
    """
    scope = request.scope
    # scope["state"] is what request.state wraps; read directly, it costs no State object.
    state: dict[str, Any] = scope.setdefault("state", {})
    rid: str | None = state.get("request_id")
    if rid is None:
        given = header(scope, b"x-request-id") or fallback
        rid = state["request_id"] = ids_of(scope.get("app")).assign(given)
    return rid


def json_response(
    payload: Any, status: int = 200, rid: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    all_headers = {"x-request-id": rid} if rid else {}
    if headers:
        all_headers.update(headers)
    if status == 408:  # the rest of a stalled body may still come: nothing else can follow
        all_headers["connection"] = "close"
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type=_JSON, headers=all_headers or None)


def error_json(request: Request, exc: ModelyardError) -> Response:
    rid = request_id(request)
    headers = getattr(exc, "headers", None)
    return json_response({**exc.to_dict(), "request_id": rid}, exc.status, rid, headers)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than {limit} bytes; send fewer rows per request "
        "or raise --max-body-bytes"
    )


def _timed_out(timeout_s: float) -> RequestTimeoutError:
    return RequestTimeoutError(
        f"the request body did not arrive within {timeout_s:g} s; send the whole body "
        "at once (the server's --body-timeout sets the limit)"
    )


@types.coroutine
def _resume(pending: Any, waiting_on: Any) -> Generator[Any, Any, Any]:
    """Finish ``pending``, a coroutine already run up to ``waiting_on`` (what it awaits)."""
    try:
        yield waiting_on  # the task resumes us once that future is done
    except GeneratorExit:  # the task itself is being discarded
        pending.close()
        raise
    except BaseException as exc:  # the timeout's cancellation: deliver it inside receive()
        try:
            waiting_on = pending.throw(exc)
        except StopIteration as done:
            return done.value
        return (yield from _resume(pending, waiting_on))
    return (yield from pending)


async def read_asgi_body(
    receive: Receive, declared_length: int | None, limit: int, timeout_s: float
) -> bytes:
    """The request body from ASGI ``receive``: 413 past ``limit`` bytes (declared or sent),
    408 when all of it has not come within ``timeout_s`` seconds of the first wait."""
    if declared_length is not None and declared_length > limit:
        raise _too_large(limit)
    pending: Any = receive()  # a coroutine, run by hand below
    try:
        waiting_on = pending.send(None)
    except StopIteration as done:  # answered without waiting: no timer needed
        message = done.value
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")
            if len(body) > limit:
                raise _too_large(limit) from None
            return body
        chunks: list[bytes] = []
        size = _take(message, chunks, 0, limit)
        resumed = None
    else:
        chunks, size, resumed = [], 0, _resume(pending, waiting_on)
    try:
        async with asyncio.timeout(timeout_s):
            if resumed is not None:
                size = _take(await resumed, chunks, size, limit)
            while size >= 0:
                size = _take(await receive(), chunks, size, limit)
    except TimeoutError:
        raise _timed_out(timeout_s) from None
    return b"".join(chunks)


def _take(message: Message, chunks: list[bytes], size: int, limit: int) -> int:
    """Add ``message``'s chunk; the size so far, or -1 once the body is complete."""
    if message["type"] != "http.request":
        raise ClientDisconnect()
    chunk: bytes = message.get("body", b"")
    if chunk:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return size if message.get("more_body", False) else -1


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (declared or streamed)
    and with 408 when it takes longer than the body timeout to arrive."""
    declared = header(request.scope, b"content-length")
    length = int(declared) if declared is not None and declared.isdigit() else None
    return await read_asgi_body(request.receive, length, limit, _body_timeout_s)
