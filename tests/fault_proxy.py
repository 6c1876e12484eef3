"""A TCP proxy that injects back-end faults in tests, in front of a real server.

``FaultProxy(host, port)`` listens on a free local port and forwards to the real server.
Its ``mode`` can be switched at any time, and applies to open connections too (a client's
pooled connection must see the fault, not only its next one):

- ``up``: bytes flow both ways.
- ``down``: the server is gone: open connections are closed and new ones refused
  (the listening socket is closed, so a connect fails at once with ECONNREFUSED).
- ``blackhole``: packets vanish: connections are accepted and read, but nothing reaches
  either side, so a client without a read timeout waits forever.

Leaving ``blackhole`` closes the connections it held: the bytes it swallowed cannot be
replayed, so those streams are broken, as after a real partition that ended in resets.

The proxy runs its own event loop in a daemon thread, so it works the same under sync
tests and under tests that run their own loop::

    with FaultProxy("127.0.0.1", 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        proxy.set_mode("blackhole")
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["up", "down", "blackhole"]
MODES: tuple[Mode, ...] = ("up", "down", "blackhole")
_CHUNK = 65536


class _Link:
    """One client connection and, unless it was accepted during a black hole, its upstream."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter | None):
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()  # a reset, as a dead server gives


class FaultProxy:
    def __init__(
        self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port or _free_port(host)
        self.mode: Mode = "up"
        self.connections_accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    # -- lifecycle (called from the test's thread) ---------------------------------------
    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(5)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: Mode) -> None:
        """Switch to ``mode`` now; open connections follow it before this returns."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        self._call(self._switch(mode))

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def _call(self, coro: object) -> None:
        assert self._loop is not None, "start the proxy first"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    # -- inside the proxy's loop ----------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.close()
        self._links.clear()

    async def _switch(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode == "down":
            await self._shutdown()
            return
        if previous == "blackhole" and mode == "up":
            for link in list(self._links):  # their swallowed bytes broke the streams
                link.close()
            self._links.clear()
        if self._server is None:
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        if self.mode == "down":  # accepted just before the listener closed
            writer.transport.abort()
            return
        upstream_writer: asyncio.StreamWriter | None = None
        upstream_reader: asyncio.StreamReader | None = None
        if self.mode == "up":
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
        link = _Link(writer, upstream_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        link.tasks.append(loop.create_task(self._pump(reader, upstream_writer, link)))
        if upstream_reader is not None:
            link.tasks.append(loop.create_task(self._pump(upstream_reader, writer, link)))

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter | None, link: _Link
    ) -> None:
        try:
            while True:
                data = await source.read(_CHUNK)
                if not data:
                    break
                if self.mode != "up" or sink is None:
                    continue  # the black hole: read, never delivered
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return
        # One side closed: close both, unless the black hole is holding this link.
        if self.mode == "up":
            link.close()
            self._links.discard(link)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
