"""An open-loop HTTP/1.1 load generator cheap enough to send twice a server's capacity.

``_load.open_loop`` (asyncio streams, a task per request) costs the client about 150 us a
request: on a 2-core machine it cannot send 9,000 req/s beside the server it measures, and
a client that falls behind measures itself. This one is hand-written for that job: uvloop,
``asyncio.Protocol`` connections with a minimal response parser, and one scheduler that
wakes every millisecond (never sooner: uvloop rounds shorter timers to 0, and the loop
would spin) and sends every request that has come due on an idle keep-alive connection
(opening one when none is idle, up to ``max_connections``; beyond that a request waits in
the client, from its scheduled time). ``warm`` connections are opened before the clock
starts, as a client's pool would be: without them the first 100 ms would open a
connection per request, and a burst of thousands of connects overflows the server's
listen backlog (SYN retries of 1 s and 3 s), which measures the client's start, not the
server. Each request's answer is timed from the
moment it was written and from its scheduled time; one with no answer after ``timeout``
seconds is counted, and its connection aborted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from _load import request_bytes


@dataclass
class Outcome:
    """What an open-loop run saw; latencies in seconds."""

    scheduled: int = 0
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    served: list[float] = field(default_factory=list)  # 2xx, from the write
    served_due: list[float] = field(default_factory=list)  # 2xx, from the scheduled time
    refused: dict[int, list[float]] = field(default_factory=dict)  # non-2xx, from the write
    lag: list[float] = field(default_factory=list)  # write time minus scheduled time
    timeouts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    seconds: float = 0.0


class _Conn(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pending: tuple[float, float] | None = None  # (due, written)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:  # every server measured here sends a length; anything else is an error
                self.client.failed(self, "no content-length")
                return
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            del self.buf[:total]
            status = int(head[9:12])
            self.client.answered(self, status, b"\r\nconnection: close" in head)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(self)


class _Client:
    def __init__(
        self, port: int, requests: list[bytes], timeout: float, max_connections: int
    ) -> None:
        self.port = port
        self.requests = requests
        self.timeout = timeout
        self.max_connections = max_connections
        self.out = Outcome()
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self.waiting: deque[tuple[int, float]] = deque()  # (index, due) with no connection yet
        self.opening = 0
        self.open = 0

    def send(self, conn: _Conn, i: int, due: float) -> None:
        now = time.perf_counter()
        conn.pending = (due, now)
        assert conn.transport is not None
        conn.transport.write(self.requests[i % len(self.requests)])
        self.busy.add(conn)
        self.out.sent += 1
        self.out.lag.append(now - due)

    def dispatch(self, i: int, due: float) -> None:
        if self.idle:
            self.send(self.idle.pop(), i, due)
            return
        self.waiting.append((i, due))
        if self.open + self.opening < self.max_connections:
            self.opening += 1
            asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self), "127.0.0.1", self.port)
        except OSError as exc:
            self.opening -= 1
            self.out.errors[f"connect: {type(exc).__name__}"] += 1
            if self.waiting:  # the request this connection was for fails with it
                self.waiting.popleft()
            return
        self.opening -= 1
        self.open += 1
        self.out.connections += 1
        self.release(conn)

    def release(self, conn: _Conn) -> None:
        if self.waiting:
            self.send(conn, *self.waiting.popleft())
        else:
            self.idle.append(conn)

    def answered(self, conn: _Conn, status: int, close: bool) -> None:
        if conn.pending is None:
            return
        due, written = conn.pending
        conn.pending = None
        self.busy.discard(conn)
        now = time.perf_counter()
        self.out.statuses[status] += 1
        if 200 <= status < 300:
            self.out.served.append(now - written)
            self.out.served_due.append(now - due)
        else:
            self.out.refused.setdefault(status, []).append(now - written)
        if close:
            self.drop(conn)
        else:
            self.release(conn)

    def failed(self, conn: _Conn, why: str) -> None:
        if conn.pending is not None:
            self.out.errors[why] += 1
            conn.pending = None
        self.drop(conn)

    def lost(self, conn: _Conn) -> None:
        if conn.pending is not None:
            self.out.errors["connection lost"] += 1
            conn.pending = None
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.transport is not None:
            conn.transport = None
            self.open -= 1

    def drop(self, conn: _Conn) -> None:
        self.busy.discard(conn)
        if conn.transport is not None:
            conn.transport.abort()  # connection_lost follows, and counts it closed

    def sweep(self) -> None:
        """Count and abort every request that waited longer than the timeout."""
        now = time.perf_counter()
        for conn in [c for c in self.busy if c.pending and now - c.pending[1] > self.timeout]:
            self.out.timeouts += 1
            conn.pending = None
            self.drop(conn)
        while self.waiting and now - self.waiting[0][1] > self.timeout:
            self.waiting.popleft()
            self.out.timeouts += 1

    async def warm_up(self, count: int) -> None:
        """Open ``count`` connections, idle, before the first request is due."""
        self.opening += count
        await asyncio.gather(*(self.connect() for _ in range(count)))

    async def run(self, rate: float, seconds: float, warm: int = 0) -> None:
        if warm:
            await self.warm_up(warm)
        total = int(rate * seconds)
        self.out.scheduled = total
        start = time.perf_counter() + 0.01
        i = 0
        last_sweep = start
        while i < total:
            now = time.perf_counter()
            due_now = min(total, int((now - start) * rate) + 1)
            while i < due_now:
                self.dispatch(i, start + i / rate)
                i += 1
            if now - last_sweep > 0.05:
                self.sweep()
                last_sweep = now
            await asyncio.sleep(max(0.001, start + i / rate - time.perf_counter()))
        deadline = time.perf_counter() + self.timeout + 1
        while (self.busy or self.waiting) and time.perf_counter() < deadline:
            self.sweep()
            await asyncio.sleep(0.01)
        for conn in list(self.idle) + list(self.busy):
            self.drop(conn)


def open_loop(
    port: int,
    path: str,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    timeout: float = 5.0,
    max_connections: int = 2048,
    warm: int = 256,
) -> Outcome:
    """Send ``rate`` requests/s for ``seconds`` whatever the answers do; see the module doc."""
    client = _Client(port, [request_bytes(port, path, b) for b in bodies], timeout, max_connections)
    t0 = time.perf_counter()
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # the standard loop works too, at a higher cost per request
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(client.run(rate, seconds, warm))
    client.out.seconds = time.perf_counter() - t0
    return client.out
