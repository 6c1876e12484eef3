"""What a tracking acknowledgement means: a ``log_metric`` that returned is stored within a
second even if the process is then killed, and a run whose process died shows failed.

Both back ends (the ``workspace`` fixture); the killed runs are real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import IO

import pytest

import modelyard
from modelyard.tracking import Run, RunInfo

LEASE_S = 0.9  # renewed every 0.3 s: a dead run is failed within a second, in a test

TRAIN = """
import sys, time
import modelyard

ws = modelyard.Workspace(sys.argv[1])
run = ws.start_run("train")
print(run.run_id, flush=True)
for step in range(300):
    run.log_metric("loss", 1.0 / (step + 1), step=step)
print("logged", flush=True)
if sys.argv[2] == "hang":
    time.sleep(600)
elif sys.argv[2] == "raise":
    raise RuntimeError("diverged")
"""


def _train(ws: modelyard.Workspace, how: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MODELYARD_METADATA_URL": ws.config["metadata.url"],
        "MODELYARD_TRACKING_LEASE_S": str(LEASE_S),
    }
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(ws.root), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _line(out: IO[str] | None) -> str:
    assert out is not None
    return out.readline().strip()


def _wait_for(ws: modelyard.Workspace, run_id: str, status: str, within_s: float) -> RunInfo:
    deadline = time.monotonic() + within_s
    while True:
        info = ws.runs.get(run_id)
        if info.status == status or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def test_metrics_that_returned_survive_kill_9_and_the_killed_run_shows_failed(
    workspace: modelyard.Workspace,
) -> None:
    with _train(workspace, "hang") as proc:
        try:
            run_id = _line(proc.stdout)
            assert _line(proc.stdout) == "logged"
            time.sleep(1.5)  # more than a second after the last log_metric returned
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()

    history = workspace.runs.history(run_id, "loss")
    info = _wait_for(workspace, run_id, "failed", LEASE_S * 3)

    assert [p.step for p in history] == list(range(300))
    assert info.status == "failed"
    assert info.error is not None and "process died" in info.error
    assert info.end_time is not None and info.end_time >= info.start_time
    assert [r.run_id for r in workspace.runs.search("status = 'failed'")] == [run_id]


def test_a_quiet_live_run_keeps_its_lease_and_is_not_failed(
    workspace: modelyard.Workspace,
) -> None:
    run = Run(
        workspace.metadata, workspace.artifacts, name="slow", experiment="e", lease_s=LEASE_S
    ).start()
    time.sleep(LEASE_S * 2.5)  # a long epoch with nothing logged

    assert workspace.runs.get(run.run_id).status == "running"
    run.end()
    assert workspace.runs.get(run.run_id).status == "finished"


def test_a_logged_metric_is_stored_within_a_second_without_flush(
    workspace: modelyard.Workspace,
) -> None:
    with workspace.start_run("train") as run:
        run.log_metric("loss", 0.7, step=0)
        deadline = time.monotonic() + 1.0
        while workspace.runs.get(run.run_id).metrics != {"loss": 0.7}:
            assert time.monotonic() < deadline, "not stored within a second"
            time.sleep(0.05)


@pytest.mark.parametrize(("how", "status"), [("exit", "finished"), ("raise", "failed")])
def test_a_process_that_exits_without_ending_its_run_ends_it(
    workspace: modelyard.Workspace, how: str, status: str
) -> None:
    with _train(workspace, how) as proc:
        out, _ = proc.communicate(timeout=120)
    run_id = out.split()[0]

    info = workspace.runs.get(run_id)
    assert info.status == status
    assert len(workspace.runs.history(run_id, "loss")) == 300
    if status == "failed":
        assert info.error == "RuntimeError: diverged"
