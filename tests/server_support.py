"""Run ``modelyard serve`` as a real process on free ports, for tests that need sockets.

The server gets its own process group, so that a test that fails half-way still
leaves no worker behind: ``stop()`` sends SIGTERM, waits, then kills the group.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

# The console script ``modelyard`` calls exactly this; going through sys.executable
# keeps the test independent of where the venv put its scripts.
CLI = [sys.executable, "-c", "from modelyard.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One ``modelyard serve`` process; its stderr (JSON log lines) goes to ``log_path``.

    ``verify`` (an SSL context trusting the server's certificate) marks an HTTPS server:
    ``url`` is then https, and readiness is checked over TLS with it.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        grpc_port: int | None,
        log_path: Path,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        self.proc = proc
        self.port = port
        self.grpc_port = grpc_port
        self.log_path = log_path
        self.verify = verify

    @property
    def url(self) -> str:
        scheme = "http" if self.verify is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for_log(
        self, match: dict[str, Any], count: int = 1, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        """The first ``count`` log lines whose fields include ``match`` (stderr may lag)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [line for line in self.log_lines() if match.items() <= line.items()]
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline:
                raise AssertionError(f"not {count} server log lines with {match}:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-n:])

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.tail()}")
            try:
                verify = True if self.verify is None else self.verify
                if httpx.get(f"{self.url}/readyz", timeout=2, verify=verify).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout_s} s:\n{self.tail()}")

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (a graceful drain), then SIGKILL to the whole group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group of this server only
        except ProcessLookupError:
            pass
        return self.proc.wait()


@contextmanager
def running_server(
    root: Path,
    refs: Sequence[str],
    *args: str,
    grpc: bool = False,
    env: dict[str, str] | None = None,
    verify: ssl.SSLContext | None = None,
) -> Iterator[ServerProcess]:
    """``modelyard serve REFS -w ROOT ARGS`` on free ports, ready; stopped on exit.

    Pass ``verify`` (a context trusting the certificate) with ``--ssl-certfile`` in ARGS.
    """
    port = free_port()
    grpc_port = free_port() if grpc else None
    command = [*CLI, "serve", *refs, "-w", str(root), "--port", str(port), *args]
    if grpc_port is not None:
        command += ["--grpc-port", str(grpc_port)]
    # Like the autouse _clean_env fixture: no MODELYARD_* from the shell reaches the server.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    log_path = root.parent / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**clean, **(env or {})},
            start_new_session=True,
        )
    server = ServerProcess(proc, port, grpc_port, log_path, verify)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class Traffic:
    """POSTs to ``model`` from background threads until the block ends."""

    def __init__(self, server: ServerProcess, model: str, bodies: Sequence[Any], threads: int):
        self.url = f"{server.url}/v1/models/{model}/predict"
        self.bodies = bodies
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        self.stop = threading.Event()
        self.answers: Counter[tuple[int, int]] = Counter()  # (version, status)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                r = client.post(self.url, json=rng.choice(self.bodies))
                self.answers[(r.json().get("version", 0), r.status_code)] += 1

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def wait_until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll ``check`` every 0.1 s until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
