"""The real ``modelyard scheduler`` process: killed with SIGKILL and started again, it
neither repeats a finished slot nor skips one; SIGTERM, and Ctrl-C, let the run in flight
end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest

import modelyard
from modelyard.jobs import JobHistory

TICK = """
from pathlib import Path


def tick(ctx):
    with open(Path(ctx.root) / "ticks.txt", "a") as f:
        f.write(ctx.logical_date.isoformat() + "\\n")
"""


def start(root: str, *, own_group: bool = False) -> subprocess.Popen[bytes]:
    """``own_group``: in a process group of its own, as a terminal's foreground job."""
    return subprocess.Popen(
        [sys.executable, "-m", "modelyard", "scheduler", "--lease", "2s", "-w", root],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        start_new_session=own_group,
    )


@pytest.mark.slow
def test_a_killed_scheduler_restarts_without_repeating_or_skipping_a_slot(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    root = sqlite_workspace.root
    (root / "pipelines.py").write_text(TICK)
    # Six fields: every second, so that a test sees many slots.
    (root / "modelyard.toml").write_text(
        '[jobs.tick]\nfunction = "pipelines:tick"\nschedule = "* * * * * *"\n'
    )
    first = start(str(root))
    time.sleep(5)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    time.sleep(3)  # slots fall due while no scheduler runs
    second = start(str(root))
    time.sleep(7)  # catch-up, and the lease of a slot the kill interrupted lapses (2 s)
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=20)
    assert second.returncode == 0, err.decode()

    history = JobHistory(sqlite_workspace.metadata)
    slots = history.slots("tick")
    dates = [modelyard._time.to_datetime(s["logical_date"]) for s in slots]
    assert len(dates) >= 10
    # Every second from the first slot to the last was taken, and each ended well.
    expected = [dates[0] + timedelta(seconds=i) for i in range(len(dates))]
    assert dates == expected
    assert {s["state"] for s in slots} == {"success"}
    runs = history.runs("tick", limit=1000)
    successes = Counter(r.logical_date for r in runs if r.status == "success")
    assert set(successes.values()) == {1}, "a finished slot ran twice"
    assert len(successes) == len(slots)
    # A slot the kill cut short may have run twice, but then its first run is on record
    # as abandoned; no other slot did.
    ticks = Counter((root / "ticks.txt").read_text().split())
    repeated = {d for d, n in ticks.items() if n > 1}
    abandoned = {r.logical_date.isoformat() for r in runs if r.status == "failed"}
    assert repeated <= abandoned


NAP = """
import time
from pathlib import Path


def nap(ctx):
    (Path(ctx.root) / "started").write_text(ctx.logical_date.isoformat())
    time.sleep(3)
"""


@pytest.mark.slow
def test_ctrl_c_lets_the_run_in_flight_end_and_records_it(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    root = sqlite_workspace.root
    (root / "pipelines.py").write_text(NAP)
    (root / "modelyard.toml").write_text(
        '[alerts.sinks.pager]\ntype = "file"\npath = "alerts.jsonl"\n'
        '[jobs.nap]\nfunction = "pipelines:nap"\nschedule = "* * * * *"\nsinks = ["pager"]\n'
    )
    scheduler = start(str(root), own_group=True)
    deadline = time.monotonic() + 60
    while not (root / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (root / "started").exists(), "the due slot never started"
    os.killpg(scheduler.pid, signal.SIGINT)  # Ctrl-C reaches the scheduler and its workers
    _, err = scheduler.communicate(timeout=30)
    assert scheduler.returncode == 0, err.decode()
    (run,) = JobHistory(sqlite_workspace.metadata).runs("nap")
    assert run.status == "success", run.error  # the worker was not killed under it
    assert not (root / "alerts.jsonl").exists()
