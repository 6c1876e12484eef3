"""A SIGTERM stops the server whenever it lands, start-up included, and the stop exits 0."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

# The SIGTERM is sent from inside Server.run, before uvicorn installs its own handlers:
# the moment a supervisor stops a worker that is still starting.
SCRIPT = textwrap.dedent(
    """
    import os, signal, socket
    import uvicorn
    from modelyard.serving._workers import run_until_sigterm

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    run = server.run

    def early_signal_then_run(sockets=None):
        os.kill(os.getpid(), signal.SIGTERM)
        run(sockets=sockets)

    server.run = early_signal_then_run
    run_until_sigterm(server, sockets=[sock])
    print("stopped", server.started)
    """
)


def test_a_sigterm_before_uvicorn_listens_still_stops_the_server_with_exit_0() -> None:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a SIGTERM during start-up was lost: the server never stopped")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped True"
    assert time.monotonic() - started < 20
