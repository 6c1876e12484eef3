"""uvicorn's HTTP protocols with the two limits they lack: a deadline on the client, and a
cap on connections. Passed to uvicorn as ``uvicorn.Config(http=protocol_class(...))``.

uvicorn closes a kept-alive connection that stays silent for 5 s, but it has no deadline
on a request being received: a client that connects and sends nothing, or half of its
headers (slowloris), or the tail of a body no route reads, holds its socket for as long
as it likes. Here a connection on which the server waits for the client, outside a
request the app holds and outside uvicorn's keep-alive wait, is closed after
``header_timeout_s`` (a stalled body inside a route is the route's to time out: see
``_http.read_asgi_body``, which answers 408). So is one whose client stops reading the
answers it asked for (its writes paused that long), which would otherwise hold the
answering request's task for ever.

The deadline costs requests nothing: instead of a timer armed and cancelled per request
(about 1 us each with uvloop), one sweep per server every ``interval`` looks at each
connection's state: a connection seen waiting on the same request in two sweeps at least
``header_timeout_s`` apart is closed. It is closed between ``header_timeout_s`` and
``header_timeout_s + 2 * interval`` after it began to wait (interval: a quarter of the
timeout, at most 1 s).

A prediction request its model's admission refuses (``_admission.py``) is answered here,
from the protocol, as soon as its headers are in: no task, no ASGI call, its body skipped
as it arrives. That is what keeps shedding cheaper than serving.

uvicorn's ``limit_concurrency`` is not the cap wanted: it counts requests in flight as
well as connections, and answers in text/plain. Here a connection beyond
``max_connections`` open in this process gets a 503 JSON answer to its first request
(``Connection: close``); answering at once, before its request has been read, would
reset the connection on many clients, which would then never see the answer.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal

import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from modelyard.serving import _admission
from modelyard.serving._admission import admit
from modelyard.serving._request_ids import is_client_id, new_id

__all__ = ["DEFAULT_HEADER_TIMEOUT_S", "DEFAULT_MAX_CONNECTIONS", "protocol_class", "write_whole"]

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 1024

logger = logging.getLogger("modelyard.serving")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _refused_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The id of a request refused before the app saw it. The app's ids are out of reach,
    and a refused request is not logged anywhere, so the client's id is echoed as it came
    (when valid) for the client's own logs."""
    given = next((v for k, v in headers if k == b"x-request-id"), b"").decode("latin-1")
    return given if is_client_id(given) else new_id()


def _refusal(limit: int) -> ASGIApp:
    """The app that answers a connection over the cap: 503 JSON, then the connection closes."""

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        rid = _refused_id(scope["headers"])
        body = orjson.dumps(
            {
                "code": "overloaded",
                "message": f"this server process already has {limit} open connections; "
                "retry in a moment, keep connections alive, or raise --max-connections",
                "request_id": rid,
            }
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"retry-after", b"1"),
            (b"x-request-id", rid.encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return refuse


_PAUSED = object()  # what a connection waits on when its client does not read

# Set in a prediction request's ASGI scope by the protocol: it, to answer in one write.
WHOLE = "modelyard.whole"


def write_whole(scope: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Write a whole answer (status, ``headers`` but its length, ``body``) in one
    ``write()`` when the protocol that read the request offers it; False when the caller
    must send it the ASGI way. uvicorn writes an answer's head and body apart: two system
    calls, and two TCP segments the client wakes up for."""
    protocol = scope.get(WHOLE)
    if protocol is None:
        return False
    cycle = protocol.cycle
    if (
        cycle is None
        or cycle.scope is not scope  # a pipelined request: uvicorn's way
        or cycle.response_started
        or cycle.disconnected
        or protocol.flow.write_paused  # uvicorn waits for the client to read: its way
    ):
        return False
    protocol.respond(cycle, status, headers, body)
    return True


class _Sweeper:
    """Closes the connections of one server that keep the server waiting too long."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, connections: set[Any], timeout_s: float
    ) -> None:
        self.loop = loop
        self.connections = connections
        self.timeout_s = timeout_s
        self.interval_s = min(1.0, timeout_s / 4)
        self.waiting: dict[Any, tuple[Any, float]] = {}  # connection: (its request, first seen)
        self.running = False

    def start(self) -> None:
        self.running = True
        self.loop.call_later(self.interval_s, self.sweep)

    def sweep(self) -> None:
        now = self.loop.time()
        before, after = self.waiting, {}
        for conn in tuple(self.connections):
            if not isinstance(conn, _Guard):  # a websocket, upgraded from HTTP
                continue
            transport = conn.transport
            if transport is None or transport.is_closing():
                continue
            if conn.timeout_keep_alive_task is not None:  # silent since its last answer:
                continue  # uvicorn's keep-alive timeout closes it
            cycle = conn.cycle  # the last request whose headers came in (None: none yet)
            if conn.flow.write_paused:  # the client stopped reading the answers it asked for
                cycle = _PAUSED
            elif cycle is not None and not cycle.response_complete:
                continue  # the app holds it: the route's own timeouts apply
            seen = before.get(conn)
            if seen is None or seen[0] is not cycle:
                after[conn] = (cycle, now)
            elif now - seen[1] >= self.timeout_s:
                logger.debug("closing a connection that kept the server waiting too long")
                # abort, not close: close() would first wait to send what a client that
                # stopped reading will never take.
                transport.abort()
            else:
                after[conn] = seen
        self.waiting = after
        if self.connections:
            self.loop.call_later(self.interval_s, self.sweep)
        else:  # no ticks for a server with no connections, or one that stopped
            self.running = False


_SWEEPERS: weakref.WeakKeyDictionary[Any, _Sweeper] = weakref.WeakKeyDictionary()


class _Guard(asyncio.Protocol):
    """What both protocols add; the settings are class attributes (see ``protocol_class``)."""

    header_timeout_s: ClassVar[float] = DEFAULT_HEADER_TIMEOUT_S
    max_connections: ClassVar[int] = DEFAULT_MAX_CONNECTIONS
    refusal: ClassVar[ASGIApp] = staticmethod(_refusal(DEFAULT_MAX_CONNECTIONS))
    # Set by uvicorn's protocol classes, which come after this one in the MRO.
    server_state: Any
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    app: Any
    transport: Any
    flow: Any
    cycle: Any
    timeout_keep_alive_task: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sweeper = _SWEEPERS.get(self.server_state)
        if sweeper is None:
            sweeper = _SWEEPERS[self.server_state] = _Sweeper(
                self.loop, self.connections, self.header_timeout_s
            )
        if not sweeper.running:
            sweeper.start()
        if len(self.connections) > self.max_connections:
            self.app = self.refusal  # uvicorn runs self.app for each request on this connection


class GuardedH11(_Guard, H11Protocol):
    """uvicorn's h11 protocol (pure Python: what uvicorn uses without httptools)."""


def _httptools_class() -> type[_Guard] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # no httptools for this platform: uvicorn would use h11 as well
        return None

    class GuardedHttpTools(_Guard, HttpToolsProtocol):
        """uvicorn's httptools protocol (the default)."""

        server_state: Any
        # Answering a refusal starts the next pipelined request from inside the answer
        # (uvicorn's on_response_complete); this breaks that chain, one call per request.
        _refusing = False

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # uvicorn (0.45 and later) starts each request's task here: at its headers, or
            # when the request before it on the connection is answered. Counted now, before
            # a task exists: a model on the event loop has no queue of its own, and under
            # overload its requests wait as tasks (see _admission.py).
            if app is not self.refusal:
                refused = admit(cycle.scope)
                if refused is None:
                    cycle.scope[WHOLE] = self
                elif self._refusing:  # the next of many pipelined requests refused: from
                    self.loop.call_soon(self._refuse, cycle, refused)  # the loop, not the stack
                    return
                else:
                    self._refuse(cycle, refused)
                    return
            super()._start_asgi_task(cycle, app)

        def _refuse(self, cycle: Any, name: str) -> None:
            if self.transport.is_closing():  # gone while it waited for its turn
                return
            self._refusing = True
            try:
                self._overloaded(cycle, name)
            finally:
                self._refusing = False

        def _overloaded(self, cycle: Any, name: str) -> None:
            """Answer 503 ``overloaded`` at once, as uvicorn would answer the app's reply."""
            admission = _admission.serving
            assert admission is not None  # admit() refused by it
            scope = cycle.scope
            rid = _refused_id(scope["headers"])
            body = admission.refusal(name, scope["path"].startswith("/v2/"), rid)
            headers = [
                (b"content-type", b"application/json"),
                (b"retry-after", b"1"),
                (b"x-request-id", rid.encode()),
            ]
            self.respond(cycle, 503, headers, body)

        def respond(
            self, cycle: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
        ) -> None:
            """Write a whole answer to ``cycle``'s request in one write, and finish it as
            uvicorn's ``send`` would. Header values are the server's own (never a client's
            unchecked): no check for line breaks is needed."""
            # A client waiting for "100 Continue" may never send the body the parser
            # expects: close, as for HTTP/1.0 and "Connection: close".
            keep_alive = cycle.keep_alive and not cycle.waiting_for_100_continue
            out = [STATUS_LINE[status]]
            for key, value in self.server_state.default_headers:
                out += [key, b": ", value, b"\r\n"]
            for key, value in headers:
                out += [key, b": ", value, b"\r\n"]
            out.append(b"content-length: %d\r\n" % len(body))
            if not keep_alive:
                out.append(b"connection: close\r\n")
            out += [b"\r\n", body]
            self.transport.write(b"".join(out))
            # A body still to come is skipped by uvicorn's parser callbacks from here on.
            cycle.response_started = cycle.response_complete = True
            cycle.waiting_for_100_continue = False
            cycle.message_event.set()  # a receive() waiting hears the end
            if not keep_alive:
                cycle.keep_alive = False
                self.transport.close()
            cycle.on_response()

    return GuardedHttpTools


_GuardedHttpTools = _httptools_class()


def protocol_class(
    *,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    http: Literal["auto", "httptools", "h11"] = "auto",
) -> type[asyncio.Protocol]:
    """The class to pass as ``uvicorn.Config(http=...)``: httptools if installed (as
    uvicorn's "auto"), else h11, with these limits."""
    base: type[_Guard] | None = GuardedH11 if http == "h11" else _GuardedHttpTools
    if base is None:
        if http == "httptools":
            raise ImportError("httptools is not installed; pip install httptools")
        base = GuardedH11
    settings = {
        "header_timeout_s": header_timeout_s,
        "max_connections": max_connections,
        "refusal": staticmethod(_refusal(max_connections)),
    }
    return type(f"Modelyard{base.__name__}", (base,), settings)
