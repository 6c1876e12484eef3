"""A running job is not silent: its progress lines show on ``jobs run``'s stderr and in
``jobs logs`` while it runs, ``jobs logs -f`` follows it to its end, and another machine
(reading the history row only) sees them a few seconds late, not only at the end.

The job below writes a progress line, then waits for the test to create a file: so
"while it runs" is certain, not a matter of timing.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO

import pytest

import modelyard
from cli_support import run_cli
from modelyard.jobs import JobHistory, JobRun
from modelyard.jobs._history import ABANDONED_AFTER_S

PIPELINES = """
import time
from pathlib import Path


def stepper(ctx):
    gate = Path(ctx.root) / "go"
    print("loading the data")
    with ctx.progress(4, desc="epoch 1/1") as bar:
        bar.advance()
        waited = 0.0
        while not gate.exists():
            time.sleep(0.05)
            waited += 0.05
            if waited > 120:
                raise TimeoutError("the test never opened the gate")
        if gate.read_text() == "fail":
            raise RuntimeError("the data went away")
        bar.advance(3)
"""

JOBS = """
[jobs.stepper]
function = "pipelines:stepper"

[jobs.nightly_stepper]
function = "pipelines:stepper"
schedule = "0 2 * * *"
"""

WAIT_S = 120  # a worker process's start under a loaded machine


def _write_workspace(ws: modelyard.Workspace) -> modelyard.Workspace:
    (ws.root / "pipelines.py").write_text(PIPELINES)
    url = ws.config["metadata.url"]
    (ws.root / "modelyard.toml").write_text(f'[metadata]\nurl = "{url}"\n{JOBS}')
    return modelyard.Workspace(ws.root)


@pytest.fixture
def jobs_ws(workspace: modelyard.Workspace) -> Iterator[modelyard.Workspace]:
    """SQLite and PostgreSQL: the history row is what another machine reads."""
    ws = _write_workspace(workspace)
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def sqlite_jobs_ws(sqlite_workspace: modelyard.Workspace) -> Iterator[modelyard.Workspace]:
    ws = _write_workspace(sqlite_workspace)
    try:
        yield ws
    finally:
        ws.close()


def modelyard_cli(*args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelyard", *args],
        stdin=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        **popen,  # type: ignore[call-overload]
    )


class Lines:
    """A stream's lines as they come, read by a thread (a pipe read would block)."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.stream = stream
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for line in self.stream:
                self.queue.put(line)
        except (ValueError, OSError):  # closed by stop(): the test is over
            pass

    def wait_for(self, wanted: str, timeout: float = WAIT_S) -> list[str]:
        """The lines up to the first with ``wanted``."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got.append(self.queue.get(timeout=0.2))
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    break  # the stream ended: nothing more will come
                continue
            if wanted in got[-1]:
                return got
        raise AssertionError(f"no line with {wanted!r}; got {got}")

    def rest(self) -> str:
        """The lines not taken yet, up to the stream's end (its process has ended)."""
        self.thread.join(30)
        return "".join(self.queue.get() for _ in range(self.queue.qsize()))


def stop(proc: subprocess.Popen[str] | None) -> None:
    """Kill ``proc`` if it still runs, and close its pipes."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_until(check: Callable[[], object], what: str, timeout: float = WAIT_S) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout} s")


def running_run(ws: modelyard.Workspace) -> JobRun:
    def find() -> JobRun | None:
        runs = JobHistory(ws.metadata).runs("stepper", limit=1)
        return runs[0] if runs and runs[0].status == "running" else None

    found = wait_until(find, "the run's start")
    assert isinstance(found, JobRun)
    return found


def open_gate(ws: modelyard.Workspace, how: str = "go") -> None:
    (ws.root / "go").write_text(how)


@pytest.mark.slow
def test_progress_shows_on_stderr_and_in_jobs_logs_while_the_job_runs(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(jobs_ws.root)
    job = modelyard_cli(
        "jobs", "run", "stepper", "-w", root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # jobs run shows the job's lines as they are written, not at the end.
        got = Lines(job.stderr).wait_for("step 1/4")
        assert any("loading the data" in line for line in got)
        assert "epoch 1/1 step 1/4 (25%)" in got[-1] and "ETA" in got[-1]
        run = running_run(jobs_ws)

        # ... and so does jobs logs, by run id or by the job's name, while it still runs.
        for ref in (run.run_id[:10], "stepper"):
            code, out, err = run_cli(capsys, "jobs", "logs", ref, "-w", root)
            assert code == 0, err
            assert "loading the data" in out and "epoch 1/1 step 1/4 (25%)" in out
        # Another machine reads the history row: it has the line within seconds.
        history = JobHistory(jobs_ws.metadata)
        wait_until(lambda: "step 1/4" in history.run(run.run_id).log, "the log's copy", 30)
        assert history.run(run.run_id).status == "running"

        open_gate(jobs_ws)
        assert job.wait(WAIT_S) == 0
        assert job.stdout is not None and "success" in job.stdout.read()
    finally:
        stop(job)
    code, out, _ = run_cli(capsys, "jobs", "logs", "stepper", "-w", root)
    assert "step 4/4 (100%)" in out and "done in" in out


@pytest.mark.slow
def test_backfill_shows_each_runs_log_on_stderr_while_it_runs_unless_quiet(
    sqlite_jobs_ws: modelyard.Workspace,
) -> None:
    root = str(sqlite_jobs_ws.root)
    one_slot = ("--start", "2026-01-01", "--end", "2026-01-01")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    job = modelyard_cli("jobs", "backfill", "nightly_stepper", *one_slot, "-w", root, **pipes)
    try:
        got = Lines(job.stderr).wait_for("step 1/4")
        assert any("loading the data" in line for line in got)
        assert "epoch 1/1 step 1/4 (25%)" in got[-1]
        assert job.poll() is None  # shown as it is written, not at the end
        open_gate(sqlite_jobs_ws)
        assert job.wait(WAIT_S) == 0
    finally:
        stop(job)

    quiet = modelyard_cli(
        "jobs", "backfill", "nightly_stepper", *one_slot, "--rerun", "-q", "-w", root, **pipes
    )
    try:
        out, err = quiet.communicate(timeout=WAIT_S)
    finally:
        stop(quiet)
    assert quiet.returncode == 0, err
    assert "1 slot(s) run, 0 failed" in out
    assert "loading the data" not in err and "step 1/4" not in err


@pytest.mark.slow
def test_jobs_logs_follow_prints_as_the_job_writes_and_exits_with_its_status(
    sqlite_jobs_ws: modelyard.Workspace,
) -> None:
    root = str(sqlite_jobs_ws.root)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    for outcome, code in (("go", 0), ("fail", 1)):
        (sqlite_jobs_ws.root / "go").unlink(missing_ok=True)
        job = modelyard_cli("jobs", "run", "stepper", "-q", "-w", root, **quiet)
        follower = None
        try:
            run = running_run(sqlite_jobs_ws)
            follower = modelyard_cli(
                "jobs",
                "logs",
                run.run_id,
                "-f",
                "-w",
                root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            seen = Lines(follower.stdout)
            seen.wait_for("step 1/4")
            assert follower.poll() is None, "it stopped following a run that still runs"
            open_gate(sqlite_jobs_ws, outcome)
            assert job.wait(WAIT_S) == code
            assert follower.wait(30) == code, "it did not end with the run"
            rest = seen.rest()
            assert follower.stderr is not None
            if code == 0:
                assert "step 4/4 (100%)" in rest
            else:
                assert "RuntimeError: the data went away" in rest
                assert "failed" in follower.stderr.read()
        finally:
            stop(job)
            stop(follower)


@pytest.mark.slow
def test_ctrl_c_stops_following_with_130_and_leaves_the_job_running(
    sqlite_jobs_ws: modelyard.Workspace,
) -> None:
    root = str(sqlite_jobs_ws.root)
    job = modelyard_cli(
        "jobs",
        "run",
        "stepper",
        "-q",
        "-w",
        root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    follower = None
    try:
        running_run(sqlite_jobs_ws)
        follower = modelyard_cli(
            "jobs",
            "logs",
            "stepper",
            "-f",
            "-w",
            root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        Lines(follower.stdout).wait_for("step 1/4")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 130
        assert follower.stderr is not None and "Traceback" not in follower.stderr.read()
        assert job.poll() is None
        open_gate(sqlite_jobs_ws)
        assert job.wait(WAIT_S) == 0
    finally:
        stop(job)
        stop(follower)


def test_logs_of_an_unknown_run_or_job_is_one_line(
    sqlite_jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "jobs", "logs", "nosuchjob", "-w", str(sqlite_jobs_ws.root))
    assert code == 2 and "no job run 'nosuchjob'" in err


def test_a_run_whose_owner_died_shows_failed_without_a_scheduler(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    # `kill -9` of `modelyard jobs run`: its run row stays "running" and its lease stops
    # being renewed. With no scheduler to take the slot over, `jobs runs` used to say
    # "running" for ever.
    history = JobHistory(jobs_ws.metadata)
    dead_slot = datetime(2026, 11, 24, 2, tzinfo=UTC)
    live_slot = datetime(2026, 11, 25, 2, tzinfo=UTC)
    assert history.claim("stepper", dead_slot, "killed-owner", lease_s=0.1, force=True)
    history.start_run("dead0000run", "stepper", dead_slot, "manual", "killed-owner")
    assert history.claim("stepper", live_slot, "live-owner", lease_s=600, force=True)
    history.start_run("live0000run", "stepper", live_slot, "manual", "live-owner")
    time.sleep(ABANDONED_AFTER_S + 0.5)

    code, out, _ = run_cli(capsys, "jobs", "runs", "stepper", "-w", str(jobs_ws.root))

    assert code == 0
    dead = history.run("dead0000run")
    assert dead.status == "failed" and "process died" in (dead.error or "")
    assert dead.ended_at is not None
    assert history.run("live0000run").status == "running"  # its owner renews its lease
    code, _, _ = run_cli(capsys, "jobs", "logs", "dead0000run", "-f", "-w", str(jobs_ws.root))
    assert code == 1  # the run ended failed: following it ends at once
