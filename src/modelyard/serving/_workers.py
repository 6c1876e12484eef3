"""``--workers N``: N server processes on one port, each with its own SO_REUSEPORT socket.

uvicorn's own supervisor shares one listening socket between its workers, and Linux
then hands a burst of new connections mostly to one of them (a load generator's 32
connections can all land on one process). With a socket per process and
SO_REUSEPORT, the kernel spreads connections evenly by hash. The supervisor here is
small: start the workers, restart one that dies, and on SIGTERM/SIGINT pass SIGTERM
on and wait while each drains its in-flight requests.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from modelyard._parent import die_with_parent
from modelyard.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("modelyard.serving")

_EARLY_S = 10.0


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(config: dict[str, Any]) -> None:
    import uvicorn

    from modelyard.serving import _logging
    from modelyard.serving._fast import asgi_entry
    from modelyard.serving._http import set_body_timeout
    from modelyard.serving._protocol import protocol_class
    from modelyard.serving._run import app_from_env, settle_heap

    # A supervisor killed with -9 must not leave its workers holding the port.
    die_with_parent(config["supervisor_pid"])
    _logging.configure(config["log_level"])
    sock = listen(config["host"], config["port"])
    set_body_timeout(config["body_timeout_s"])  # before app_from_env(): routes may read it
    http = protocol_class(
        header_timeout_s=config["header_timeout_s"], max_connections=config["max_connections"]
    )
    server = uvicorn.Server(
        uvicorn.Config(
            asgi_entry(app_from_env()),
            http=http,
            log_config=_logging.log_config(config["log_level"]),
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=config["grace_s"],
            ssl_certfile=config["ssl_certfile"],  # None: plain HTTP
            ssl_keyfile=config["ssl_keyfile"],
        )
    )
    settle_heap()
    run_until_sigterm(server, sockets=[sock])


def run_until_sigterm(server: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
    """``server.run()``, stopped by a SIGTERM whenever it lands, and exiting 0 after draining.

    uvicorn installs its own handlers only once it starts serving; a SIGTERM that lands
    before (the supervisor stops a worker that is still starting) would be lost, leaving a
    worker that never exits. This handler stops the server instead: uvicorn checks
    ``should_exit`` right after start-up. uvicorn also re-raises the SIGTERM it drained for;
    handled here, that stop exits 0.
    """

    def stop(*_: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    server.run(sockets=sockets)


def supervise(workers: int, config: dict[str, Any]) -> None:
    """Run ``workers`` processes until SIGTERM/SIGINT; restart any that dies meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    def start() -> BaseProcess:
        worker_config = {**config, "supervisor_pid": os.getpid()}
        proc = ctx.Process(target=_worker, args=(worker_config,), name="modelyard-worker")
        proc.start()
        return proc

    procs = [start() for _ in range(workers)]
    started = {p.pid: time.monotonic() for p in procs}
    early_deaths = 0
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while procs:
            wait([p.sentinel for p in procs])
            for proc in [p for p in procs if not p.is_alive()]:
                procs.remove(proc)
                _mark_dead(proc.pid)
                if stopping:
                    continue
                logger.error(
                    "worker died; starting another",
                    extra={"worker_pid": proc.pid, "exitcode": proc.exitcode},
                )
                if time.monotonic() - started.get(proc.pid, 0.0) < _EARLY_S:
                    early_deaths += 1
                if early_deaths >= 3:  # a crash loop: stop instead of spinning
                    stop(signal.SIGTERM, None)
                    raise ConfigError(
                        "server workers keep dying right after they start; see the log above"
                    )
                fresh = start()
                started[fresh.pid] = time.monotonic()
                procs.append(fresh)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _mark_dead(pid: int | None) -> None:
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
