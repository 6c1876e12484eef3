"""A server killed with -9 leaves nothing running: its workers (``--workers N``) and its
prediction log's shipping process end with it, and the port is free for a restart.

Real processes, as a user (or an orchestrator) kills them.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pandas as pd
import pytest

import modelyard
from server_support import running_server, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def served_root(tmp_path: Path) -> Path:
    ws = modelyard.Workspace.init(tmp_path / "ws", environ={})

    def double(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": frame["a"] * 2})

    with ws.start_run("orphans") as run:
        logged = ws.registry.log_model(run, double, input_example=pd.DataFrame({"a": [1.0]}))
    ws.registry.set_alias("double", "production", ws.registry.register("double", logged).version)
    ws.close()
    return ws.root


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        out += kids
        frontier += kids
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def _predict(url: str) -> int:
    return httpx.post(f"{url}/v1/models/double/predict", json={"a": 1.0}, timeout=10).status_code


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads processes from /proc")
@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_leaves_no_process_behind_and_a_restart_serves(
    served_root: Path, workers: int
) -> None:
    with running_server(served_root, ["double@production", "--workers", str(workers)]) as served:
        assert _predict(served.url) == 200
        # Workers, and each server process's shipping child, started by now.
        wait_until(lambda: len(_children(served.proc.pid)) >= workers + 1, timeout_s=20)
        left = _children(served.proc.pid)
        served.proc.send_signal(signal.SIGKILL)  # the supervisor (or the only process)
        served.proc.wait()
        wait_until(lambda: not any(_alive(p) for p in left), timeout_s=15)
        with socket.socket() as probe:  # nothing holds the port: a restart can take it
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", served.port))
