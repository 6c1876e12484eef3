"""The prediction routes as plain ASGI, in front of FastAPI's router.

A single-row prediction costs about 90 µs in the model; FastAPI's routing (a regex per
route), its ``Request`` and dependency solving and Starlette's ``Response`` cost about as
much again. ``FastPath``, the top of the app's middleware stack, therefore answers
``POST /v1/models/NAME/predict`` and ``POST /v2/models/NAME[/versions/V]/infer`` itself,
from the raw ASGI scope, and hands every other request to FastAPI unchanged (``asgi_entry``
puts one in front of FastAPI itself, for the HTTP server). The routes stay declared in
FastAPI too, so /docs and /openapi.json describe them; their FastAPI endpoints run the
same handler (``AsgiEndpoint``), so the two ways in cannot drift apart.

Feature lookups (``GET`` and ``POST /v1/features/SERVICE``, ``_features_route.py``) go
the same way, through ``more``: a router by method and path whose routes are checked by
their own rule in ``_auth.RULES`` and are not counted per model.

Written by hand because FastAPI and Starlette have no lighter route type: any route
of theirs pays for matching every route before it and for building a ``Request``.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from modelyard.errors import ModelyardError
from modelyard.security import acting_as
from modelyard.serving import _admission
from modelyard.serving._admission import ADMITTED, Admission
from modelyard.serving._auth import PREDICT, Guard, actor, check_routes, rule_for
from modelyard.serving._http import header, read_asgi_body
from modelyard.serving._protocol import write_whole
from modelyard.serving._request_ids import RequestIds, ids_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json"
# A client that stops reading its answers must not hold a request's task for ever: the
# protocol closes its connection (``_protocol.py``), which ends the wait in ``send``.
# A large answer is also bounded here, for servers other than ours.
SEND_TIMEOUT_S = 30.0
_UNBLOCKED_BYTES = 16 * 1024


class ClientGone(Exception):
    """The client closed the connection before its request body arrived (nginx's 499)."""

    status = 499


@dataclass
class Reply:
    """An answer, whichever way in it was asked for."""

    status: int
    body: bytes
    request_id: str
    content_type: bytes = _JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(payload: Any, status: int, rid: str, headers: dict[str, str] | None = None) -> Reply:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Reply(status, body, rid, _JSON, headers or {})


class Call:
    """One request as its handler sees it: headers, path, the body, the request id."""

    __slots__ = ("scope", "receive", "_request_id", "body_timeout_s", "_held", "_ids")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        body_timeout_s: float,
        ids: RequestIds,
        held: tuple[Admission, str] | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.body_timeout_s = body_timeout_s
        self._ids = ids
        self._request_id: str | None = None
        self._held = held

    def routed(self) -> None:
        """The request no longer counts against its model's admission: its answer has
        left, or it was routed to a candidate, whose own queue counts it from there
        (``Deployment.infer``). Called once or more; only the first counts."""
        if self._held is not None:
            admission, name = self._held
            self._held = None
            admission.leave(name)

    def alone(self) -> bool:
        """No other request for this model is in the server (admitted and not answered):
        a batch would wait for nobody."""
        if self._held is None:
            return False
        admission, name = self._held
        return admission.held.get(name) == 1

    def header(self, name: bytes) -> str | None:
        """A request header by its lower-case name (ASGI servers lower-case them)."""
        return header(self.scope, name)

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = self._ids.assign(self.header(b"x-request-id"))
        return self._request_id

    def name_request(self, given: str) -> None:
        """Name the request from its body (OIP's ``id``) unless X-Request-ID named it."""
        if self._request_id is None and self.header(b"x-request-id") is None:
            self._request_id = self._ids.assign(given)

    async def body(self, limit: int) -> bytes:
        """The body: 413 past ``limit`` bytes, 408 when it stops arriving (``_http.py``)."""
        declared = self.header(b"content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        try:
            return await read_asgi_body(self.receive, length, limit, self.body_timeout_s)
        except ClientDisconnect:
            raise ClientGone() from None


async def send_reply(send: Send, reply: Reply, scope: Scope | None = None) -> None:
    headers = [
        (b"content-type", reply.content_type),
        (b"x-request-id", reply.request_id.encode("latin-1")),
    ]
    for key, value in reply.headers.items():
        headers.append((key.lower().encode("latin-1"), value.encode("latin-1")))
    if scope is not None and write_whole(scope, reply.status, headers, reply.body):
        return
    headers.append((b"content-length", str(len(reply.body)).encode()))
    if len(reply.body) < _UNBLOCKED_BYTES:
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        return
    async with asyncio.timeout(SEND_TIMEOUT_S):
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


Handler = Callable[[Call, dict[str, str]], Awaitable[Reply]]
# Picks the handler for a POST path: (handler, path parameters), or None for FastAPI.
Router = Callable[[str], tuple[Handler, dict[str, str]] | None]
# Picks the handler for a method and path (routes not admitted per model), or None.
MethodRouter = Callable[[str, str], tuple[Handler, dict[str, str]] | None]


class FastPath:
    """The top of the app's middleware stack: fast routes here, the rest to ``inner``."""

    def __init__(
        self,
        inner: Any,
        router: Router,
        body_timeout_s: float,
        admission: Admission,
        refuse: Handler,
        ids: RequestIds,
        guard: Guard,
        more: MethodRouter | None = None,
    ) -> None:
        self.inner = inner
        self.guard = guard
        self.more = more
        self.router = router
        self.body_timeout_s = body_timeout_s
        self.admission = admission
        self.refuse = refuse
        self.ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if scope["method"] == "POST":
            found = self.router(scope["path"])
            if found is not None:
                handler, params = found
                name = params["name"]
                admitted = scope.get(ADMITTED)  # set by the protocol, which counted it
                try:
                    await self.guard.check(scope, PREDICT, name)
                except ModelyardError as exc:
                    if admitted:
                        self.admission.leave(name)
                    await self._refuse(scope, receive, send, exc)
                    return
                if admitted is None:
                    admitted = self.admission.enter(name)
                if not admitted:
                    refused = Call(scope, receive, 0.0, self.ids)
                    await send_reply(send, await self.refuse(refused, params))
                    return
                call = Call(scope, receive, self.body_timeout_s, self.ids, (self.admission, name))
                try:
                    reply = await handler(call, params)
                finally:
                    # Released as the answer leaves, just before it is written: writing it
                    # starts the next request pipelined behind it on the connection.
                    call.routed()
                if reply.status != ClientGone.status:
                    await send_reply(send, reply, scope)
                return
        path = scope["path"]
        if self.more is not None:
            other = self.more(scope["method"], path)
            if other is not None:
                await self._answer_more(scope, receive, send, *other)
                return
        rule = rule_for(scope["method"], path)
        try:
            key = await self.guard.check(scope, rule, None if rule is None else rule.model(path))
        except ModelyardError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        if rule is not None and rule.permission == "admin":
            with acting_as(actor(key, scope)):  # the audit log names who acted
                await self.inner(scope, receive, send)
            return
        await self.inner(scope, receive, send)

    async def _answer_more(
        self, scope: Scope, receive: Receive, send: Send, handler: Handler, params: dict[str, str]
    ) -> None:
        try:
            await self.guard.check(scope, rule_for(scope["method"], scope["path"]), None)
        except ModelyardError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        reply = await handler(Call(scope, receive, self.body_timeout_s, self.ids), params)
        if reply.status != ClientGone.status:
            await send_reply(send, reply, scope)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, exc: ModelyardError
    ) -> None:
        """Our error shape (OIP's ``error`` too under /v2), before any route ran."""
        rid = Call(scope, receive, 0.0, self.ids).request_id
        if exc.status == 401 and _dashboard_page(scope):  # a person: show the sign-in form
            target = quote(scope["path"] + _query(scope), safe="")
            where = {"location": f"/ui/sign-in?next={target}", "cache-control": "no-store"}
            await send_reply(send, Reply(303, b"", rid, b"text/plain", where))
            return
        if scope["path"].startswith("/ui/"):  # a person at the dashboard: a page, not JSON
            page = _REFUSED_PAGE.format(message=html.escape(exc.message)).encode()
            headers = {**getattr(exc, "headers", {}), "cache-control": "no-store"}
            await send_reply(
                send, Reply(exc.status, page, rid, b"text/html; charset=utf-8", headers)
            )
            return
        payload: dict[str, Any] = {**exc.to_dict(), "request_id": rid}
        if scope["path"].startswith("/v2"):
            payload["error"] = exc.message
        await send_reply(send, json_reply(payload, exc.status, rid, getattr(exc, "headers", None)))


_REFUSED_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not allowed</title>'
    '<link rel="stylesheet" href="/ui/static/ui.css"><link rel="icon" href="data:,"></head>'
    '<body><main><h1>Not allowed</h1><p class="error" role="alert">{message}</p>'
    '<p><a href="/ui/runs">Back to the dashboard</a></p></main></body></html>'
)


def _dashboard_page(scope: Scope) -> bool:
    path: str = scope["path"]
    return scope["method"] in ("GET", "HEAD") and (path == "/ui" or path.startswith("/ui/"))


def _query(scope: Scope) -> str:
    raw: bytes = scope.get("query_string", b"")
    return "?" + raw.decode("latin-1") if raw else ""


def install(
    app: FastAPI,
    router: Router,
    body_timeout_s: float,
    admission: Admission,
    refuse: Handler,
    guard: Guard,
    more: MethodRouter | None = None,
) -> None:
    """Put the fast routes in front of FastAPI's stack (its routes are all added by now).

    Starlette builds its middleware stack on the first call unless one is set; set here,
    it wraps the stack Starlette would have built, exception handlers and all.
    """
    check_routes(app.routes)
    app.middleware_stack = FastPath(
        app.build_middleware_stack(),
        router,
        body_timeout_s,
        admission,
        refuse,
        ids_of(app),
        guard,
        more,
    )
    app.state.fast_path = app.middleware_stack


def asgi_entry(app: FastAPI) -> FastPath:
    """What the HTTP server runs: the fast routes even before FastAPI's own ``__call__``,
    which looks for an OpenTelemetry set-up on every request. The app's stack keeps its
    ``FastPath`` for callers that call the app itself (tests, mounting)."""
    inside: FastPath = app.state.fast_path
    _admission.serving = inside.admission  # the protocol counts requests from their headers
    return FastPath(
        app,
        inside.router,
        inside.body_timeout_s,
        inside.admission,
        inside.refuse,
        inside.ids,
        inside.guard,
        inside.more,
    )


class AsgiEndpoint(Response):
    """What the FastAPI declaration of a fast route returns: the same handler, run as ASGI."""

    def __init__(self, handler: Handler, params: dict[str, str], body_timeout_s: float) -> None:
        self._handler = handler
        self._params = params
        self._body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = Call(scope, receive, self._body_timeout_s, ids_of(scope.get("app")))
        reply = await self._handler(call, self._params)
        if reply.status != ClientGone.status:
            await send_reply(send, reply)
