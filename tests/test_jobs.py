"""Jobs as a user runs them: declared in modelyard.toml, run once, retried, timed out,
backfilled, scheduled (restarts, catch-up, two schedulers, lapsed leases, SLAs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import modelyard
from cli_support import run_cli
from modelyard.jobs import (
    JobHistory,
    Schedule,
    Scheduler,
    open_runner,
    run_due,
    run_job,
    wait_all,
    workspace_jobs,
)

# The job functions, in a module of the workspace: each appends what it saw to out/.
PIPELINES = """
import json, os, time
from pathlib import Path


def _mark(ctx, name):
    out = Path(ctx.root) / "out"
    out.mkdir(exist_ok=True)
    with open(out / name, "a") as f:
        f.write(json.dumps({"start": ctx.interval_start.isoformat(),
                            "end": ctx.interval_end.isoformat(),
                            "attempt": ctx.attempt, "partition": ctx.partition,
                            "pid": os.getpid(), "ppid": os.getppid(),
                            "params": dict(ctx.params)}) + "\\n")


def daily(ctx):
    print("scoring", ctx.logical_date.date())
    ctx.log.info("rows scored: %d", 42)
    _mark(ctx, "daily.jsonl")


def flaky(ctx):
    _mark(ctx, "flaky.jsonl")
    if ctx.attempt < 3:
        raise ValueError(f"source not ready (attempt {ctx.attempt})")


def broken(ctx):
    raise RuntimeError("the warehouse is gone")


def refused(ctx):
    from modelyard.errors import InvalidInputError

    raise InvalidInputError("2020-01-01 is before the calendar; give a later --date")


def slow(ctx):
    _mark(ctx, "slow.jsonl")
    time.sleep(60)


def fanout(ctx):
    _mark(ctx, "fanout.jsonl")
    if ctx.partition == "b" and ctx.attempt == 1:
        raise ValueError("partition b failed once")
"""

JOBS = """
[alerts.sinks.pager]
type = "file"
path = "alerts.jsonl"

[jobs.daily]
function = "pipelines:daily"
schedule = "0 2 * * *"
params = { region = "eu" }
inputs = ["view:orders"]
outputs = ["scores.parquet"]

[jobs.flaky]
function = "pipelines:flaky"
retries = 3
retry_delay = "10s"

[jobs.broken]
function = "pipelines:broken"
schedule = "0 * * * *"
retries = 1
retry_delay = "1s"
sla = "30m"
sinks = ["pager"]

[jobs.refused]
function = "pipelines:refused"
retries = 3
retry_delay = "1h"

[jobs.slow]
function = "pipelines:slow"
timeout = "2s"
sinks = ["pager"]

[jobs.fanout]
function = "pipelines:fanout"
partitions = ["a", "b", "c"]
retries = 1
retry_delay = "1s"
"""


def lines(ws: modelyard.Workspace, name: str) -> list[dict[str, object]]:
    path = ws.root / "out" / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def alerts(ws: modelyard.Workspace) -> list[dict[str, object]]:
    path = ws.root / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def jobs_ws(workspace: modelyard.Workspace) -> Iterator[modelyard.Workspace]:
    """A workspace (SQLite and PostgreSQL) with the jobs above declared in modelyard.toml."""
    (workspace.root / "pipelines.py").write_text(PIPELINES)
    url = workspace.config["metadata.url"]
    (workspace.root / "modelyard.toml").write_text(f'[metadata]\nurl = "{url}"\n{JOBS}')
    ws = modelyard.Workspace(workspace.root)
    try:
        yield ws
    finally:
        ws.close()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- schedules ---------------------------------------------------------------------------------
def test_a_slot_covers_the_interval_before_its_run() -> None:
    daily = Schedule.parse("0 2 * * *")
    assert daily.interval(at("2026-11-24T02:00")) == (
        at("2026-11-24T02:00"),
        at("2026-11-25T02:00"),
    )
    # At 03:00 on the 25th the newest complete interval is the one starting on the 24th.
    assert daily.due(None, at("2026-11-25T03:00")) == [at("2026-11-24T02:00")]
    assert daily.due(at("2026-11-21T02:00"), at("2026-11-25T03:00")) == [
        at("2026-11-22T02:00"),
        at("2026-11-23T02:00"),
        at("2026-11-24T02:00"),
    ]
    assert daily.between(at("2026-11-01"), at("2026-11-03")) == [
        at("2026-11-01T02:00"),
        at("2026-11-02T02:00"),
    ]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('schedule = "every day"', "schedule 'every day' is not a cron string"),
        ('schedule = "61 * * * *"', "schedule '61 * * * *' is not a valid cron string"),
        ('timeout = "soon"', "timeout 'soon' is not a duration"),
        ("retries = -1", "retries must be a whole number >= 0"),
        ('catchup = "some"', "catchup must be one of all, latest"),
        ('executor = "spark"', "executor 'spark' is not known; use one of: local, ray, ray://"),
        ("retry = 3", "unknown option 'retry'"),
        ('schedule = "0 1 * * *"\nafter = ["nightly"]', "'nightly' waits for itself through"),
        ('after = ["features"]', "after names 'features', which is not a scheduled job"),
        ('after = "features"', "after must be a list of strings"),
    ],
)
def test_a_bad_job_table_fails_every_command_with_one_line(
    sqlite_workspace: modelyard.Workspace,
    capsys: pytest.CaptureFixture[str],
    toml: str,
    message: str,
) -> None:
    (sqlite_workspace.root / "modelyard.toml").write_text(
        f'[jobs.nightly]\nfunction = "pipelines:daily"\n{toml}\n'
    )
    code, _, err = run_cli(capsys, "models", "list", "-w", str(sqlite_workspace.root))
    assert code == 2
    assert message in err and "job 'nightly'" in err
    assert "Traceback" not in err


def test_unknown_job_and_a_date_off_the_schedule_are_refused(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(jobs_ws.root)
    code, _, err = run_cli(capsys, "jobs", "run", "nightly", "-w", ws)
    assert (
        code == 2
        and "no job named 'nightly' (jobs: broken, daily, fanout, flaky, refused, slow)" in err
    )
    code, _, err = run_cli(capsys, "jobs", "run", "daily", "--date", "2026-11-24T05:00Z", "-w", ws)
    assert code == 2
    assert "not a slot of schedule '0 2 * * *'; the nearest are 2026-11-24T02:00:00" in err
    assert JobHistory(jobs_ws.metadata).runs() == []


def test_a_job_naming_an_undeclared_sink_is_refused(
    sqlite_workspace: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    (sqlite_workspace.root / "modelyard.toml").write_text(
        '[jobs.n]\nfunction = "pipelines:daily"\nsinks = ["oncall"]\n'
    )
    code, _, err = run_cli(capsys, "jobs", "list", "-w", str(sqlite_workspace.root))
    assert code == 2 and "sends to sink 'oncall', which is not declared" in err


# -- running once ------------------------------------------------------------------------------
def test_jobs_run_records_the_run_and_its_log(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(jobs_ws.root)
    code, out, _ = run_cli(capsys, "jobs", "run", "daily", "--date", "2026-11-24", "-w", ws)
    assert code == 0, out
    (seen,) = lines(jobs_ws, "daily.jsonl")
    assert seen["start"] == "2026-11-24T02:00:00+00:00"
    assert seen["end"] == "2026-11-25T02:00:00+00:00"
    assert seen["params"] == {"region": "eu"}
    (run,) = JobHistory(jobs_ws.metadata).runs("daily")
    assert (run.status, run.attempts, run.trigger) == ("success", 1, "manual")
    assert run.duration_s is not None and run.duration_s >= 0
    code, out, _ = run_cli(capsys, "jobs", "logs", run.run_id[:10], "-w", ws)
    assert code == 0
    assert "scoring 2026-11-24" in out and "rows scored: 42" in out
    code, out, _ = run_cli(capsys, "jobs", "runs", "daily", "-w", ws)
    assert run.run_id[:12] in out and "success" in out
    code, out, _ = run_cli(capsys, "jobs", "list", "-w", ws)
    assert "0 2 * * *" in out and "2026-11-24 02:00:00 success" in out
    assert "view:orders → scores.parquet" in out


def test_retries_back_off_exponentially_until_success(jobs_ws: modelyard.Workspace) -> None:
    waits: list[float] = []
    with open_runner(jobs_ws, sleep=waits.append) as runner:
        run = run_job(jobs_ws, "flaky", runner=runner)
    assert (run.status, run.attempts) == ("success", 3)
    assert waits == [10.0, 20.0]
    assert [x["attempt"] for x in lines(jobs_ws, "flaky.jsonl")] == [1, 2, 3]
    assert "source not ready (attempt 1)" in run.log


def test_a_run_failing_after_its_retries_alerts_and_exits_1(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys, "jobs", "run", "broken", "--date", "2026-11-24T05:00Z", "-w", str(jobs_ws.root)
    )
    assert code == 1 and "failed" in out
    (run,) = JobHistory(jobs_ws.metadata).runs("broken")
    assert (run.status, run.attempts) == ("failed", 2)
    assert run.error == "RuntimeError: the warehouse is gone"
    (alert,) = alerts(jobs_ws)
    assert alert["rule"] == "job:broken" and alert["metric"] == "job.failed"
    assert "job broken failed for 2026-11-24T05:00:00 after 2 attempt(s)" in str(alert["message"])
    code, out, _ = run_cli(capsys, "monitor", "alerts", "-w", str(jobs_ws.root))
    assert "job:broken" in out


def test_a_job_refusing_its_input_fails_at_once_with_one_line(
    jobs_ws: modelyard.Workspace,
) -> None:
    run = run_job(jobs_ws, "refused")  # retries = 3, an hour apart: none is made
    assert run.status == "failed" and run.attempts == 1
    assert run.error == (
        "InvalidInputError: 2020-01-01 is before the calendar; give a later --date"
    )
    assert "Traceback" not in run.log
    # Nothing was done: the slot is not taken (the scheduler does not go on from it) and
    # nobody is paged for a date mistyped at the prompt.
    history = JobHistory(jobs_ws.metadata)
    assert history.slots("refused") == [] and alerts(jobs_ws) == []


def test_an_interrupted_run_is_recorded_without_an_alert_and_its_slot_is_due_again(
    jobs_ws: modelyard.Workspace,
) -> None:
    def ctrl_c(seconds: float) -> None:  # Ctrl-C while the run waits to retry
        raise KeyboardInterrupt

    with open_runner(jobs_ws, sleep=ctrl_c) as runner, pytest.raises(KeyboardInterrupt):
        run_job(jobs_ws, "broken", runner=runner)
    history = JobHistory(jobs_ws.metadata)
    (run,) = history.runs("broken")
    assert run.status == "failed" and "interrupted" in (run.error or "")
    assert alerts(jobs_ws) == []  # the operator stopped it: nobody is paged
    assert history.slots("broken") == []  # not done: a scheduler runs the slot again


def test_jobs_run_retries_overrides_the_jobs_own(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run_cli(capsys, "jobs", "run", "flaky", "--retries", "0", "-w", str(jobs_ws.root))
    assert code == 1  # the first attempt fails, and no retry waits 10 s after it
    (run,) = JobHistory(jobs_ws.metadata).runs("flaky")
    assert run.attempts == 1 and len(lines(jobs_ws, "flaky.jsonl")) == 1
    code, _, err = run_cli(
        capsys, "jobs", "run", "flaky", "--retries", "-1", "-w", str(jobs_ws.root)
    )
    assert code == 2 and "Traceback" not in err


def test_a_run_past_its_timeout_is_stopped_and_alerts(jobs_ws: modelyard.Workspace) -> None:
    started = time.monotonic()
    run = run_job(jobs_ws, "slow")
    assert time.monotonic() - started < 20  # the 60 s sleep was cut at 2 s
    assert run.status == "timeout" and run.error == "timed out after 2 s"
    assert len(lines(jobs_ws, "slow.jsonl")) == 1
    (alert,) = alerts(jobs_ws)
    assert alert["metric"] == "job.timeout"


def test_a_fan_out_retries_only_the_partition_that_failed(jobs_ws: modelyard.Workspace) -> None:
    with open_runner(jobs_ws, sleep=lambda _: None) as runner:
        run = run_job(jobs_ws, "fanout", runner=runner)
    assert (run.status, run.attempts) == ("success", 2)
    calls = [(x["partition"], x["attempt"]) for x in lines(jobs_ws, "fanout.jsonl")]
    assert sorted(calls) == [("a", 1), ("b", 1), ("b", 2), ("c", 1)]


# -- backfills -----------------------------------------------------------------------------------
def test_backfill_runs_each_slot_once_and_reruns_only_when_asked(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(jobs_ws.root)
    args = ("jobs", "backfill", "daily", "--start", "2026-11-01", "--end", "2026-11-05", "-w", ws)
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "5 slot(s) run, 0 failed" in out
    starts = [x["start"][:10] for x in lines(jobs_ws, "daily.jsonl")]
    assert starts == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "0 slot(s) run" in out and "--rerun" in out
    code, out, _ = run_cli(capsys, *args, "--rerun")
    assert "5 slot(s) run" in out
    assert len(lines(jobs_ws, "daily.jsonl")) == 10
    code, _, err = run_cli(
        capsys,
        "jobs",
        "backfill",
        "daily",
        "--start",
        "2026-11-05",
        "--end",
        "2026-11-01",
        "-w",
        ws,
    )
    assert code == 2 and "--end 2026-11-01 is before --start 2026-11-05" in err


# -- the scheduler -------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def scheduled(jobs_ws: modelyard.Workspace) -> Callable[..., Scheduler]:
    """Schedulers over the workspace's 'daily' job, closed at the end of the test."""
    made: list[tuple[Scheduler, object]] = []

    def make(clock: Clock, *, owner: str = "s1", catchup: str = "all") -> Scheduler:
        jobs = workspace_jobs(jobs_ws)
        daily = jobs["daily"].__class__(**{**jobs["daily"].__dict__, "catchup": catchup})
        ctx = open_runner(jobs_ws, owner=owner)
        runner = ctx.__enter__()
        sched = Scheduler({"daily": daily}, runner, clock=clock)
        made.append((sched, ctx))
        return sched

    yield make  # type: ignore[misc]
    for sched, ctx in made:
        sched.close()
        ctx.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_a_restarted_scheduler_catches_up_without_repeating_a_slot(
    jobs_ws: modelyard.Workspace, scheduled: Callable[..., Scheduler]
) -> None:
    clock = Clock(at("2026-11-20T03:00"))
    first = scheduled(clock)
    assert [r.logical_date for r in wait_all(first.tick())] == [at("2026-11-19T02:00")]
    assert wait_all(first.tick()) == []  # the same tick again runs nothing
    first.close()
    clock.now = at("2026-11-23T02:30")  # down for three days, then started again
    second = scheduled(clock, owner="s2")
    runs = wait_all(second.tick())
    assert [r.logical_date.day for r in runs] == [20, 21, 22]
    assert all(r.trigger == "schedule" for r in runs)
    starts = [x["start"][:10] for x in lines(jobs_ws, "daily.jsonl")]
    assert starts == ["2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22"]


def test_catchup_latest_runs_the_newest_slot_and_records_the_rest_as_skipped(
    jobs_ws: modelyard.Workspace, scheduled: Callable[..., Scheduler]
) -> None:
    clock = Clock(at("2026-11-20T03:00"))
    sched = scheduled(clock, catchup="latest")
    wait_all(sched.tick())
    clock.now = at("2026-11-24T03:00")
    runs = wait_all(sched.tick())
    assert [r.logical_date.day for r in runs] == [23]
    states = {s["logical_date"]: s["state"] for s in JobHistory(jobs_ws.metadata).slots("daily")}
    assert sorted(states.values()) == ["skipped", "skipped", "skipped", "success", "success"]


def test_two_schedulers_on_one_database_run_each_slot_once(
    jobs_ws: modelyard.Workspace, scheduled: Callable[..., Scheduler]
) -> None:
    clock = Clock(at("2026-11-20T03:00"))
    a, b = scheduled(clock, owner="a"), scheduled(clock, owner="b")
    wait_all(a.tick())  # both start from the same history
    clock.now = at("2026-11-26T03:00")
    futures: list[object] = []
    barrier = threading.Barrier(2)

    def go(s: Scheduler) -> None:
        barrier.wait()
        futures.extend(s.tick())
        futures.extend(s.tick())

    threads = [threading.Thread(target=go, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_all(futures)  # type: ignore[arg-type]
    starts = [x["start"][:10] for x in lines(jobs_ws, "daily.jsonl")]
    assert sorted(starts) == [f"2026-11-{d}" for d in range(19, 26)]


def test_a_slot_whose_owner_died_is_run_again_by_another_scheduler(
    jobs_ws: modelyard.Workspace, scheduled: Callable[..., Scheduler]
) -> None:
    history = JobHistory(jobs_ws.metadata)
    slot = at("2026-11-19T02:00")
    assert history.claim("daily", slot, "crashed", lease_s=0.001)
    time.sleep(0.01)
    sched = scheduled(Clock(at("2026-11-20T03:00")))
    (run,) = wait_all(sched.tick())
    assert (run.logical_date, run.trigger, run.status) == (slot, "recovery", "success")
    assert history.slot("daily", slot)["state"] == "success"  # type: ignore[index]


def test_a_missed_sla_alerts_once(jobs_ws: modelyard.Workspace) -> None:
    jobs = workspace_jobs(jobs_ws)
    clock = Clock(at("2026-11-24T05:10"))
    with open_runner(jobs_ws, owner="s", sleep=lambda _: None) as runner:
        sched = Scheduler({"broken": jobs["broken"]}, runner, clock=clock)
        (run,) = wait_all(sched.tick())
        assert run.status == "failed"  # the 04:00 slot, due at 05:00
        assert [a["metric"] for a in alerts(jobs_ws)] == ["job.failed"]
        clock.now = at("2026-11-24T05:40")  # 05:00 + 30 min SLA has passed
        sched.tick()
        clock.now = at("2026-11-24T05:50")
        sched.tick()
        sched.close()
    sla = [a for a in alerts(jobs_ws) if a["metric"] == "job.sla_missed"]
    assert len(sla) == 1
    assert "has not succeeded for 2026-11-24T04:00:00 by its SLA deadline" in str(sla[0]["message"])


def test_jobs_declared_with_the_decorator(
    sqlite_workspace: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    root = sqlite_workspace.root
    (root / "nightly_jobs.py").write_text(
        "from modelyard.jobs import job\n\n"
        '@job(schedule="30 1 * * *", retries=2, timeout="1h")\n'
        "def refresh_scores(ctx):\n"
        '    """Re-score every customer."""\n'
        "    (__import__('pathlib').Path(ctx.root) / 'done').write_text(str(ctx.logical_date))\n"
    )
    (root / "modelyard.toml").write_text('[jobs]\nmodules = ["nightly_jobs"]\n')
    code, out, _ = run_cli(capsys, "jobs", "list", "-w", str(root))
    assert code == 0 and "refresh-scores" in out and "30 1 * * *" in out
    code, out, _ = run_cli(
        capsys, "jobs", "run", "refresh-scores", "--date", "2026-11-24", "-w", str(root)
    )
    assert code == 0
    assert (root / "done").read_text() == "2026-11-24 01:30:00+00:00"


def test_monitor_check_runs_as_a_scheduled_job(
    sqlite_workspace: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor_support import train_diabetes

    train_diabetes(sqlite_workspace)
    root = sqlite_workspace.root
    (root / "modelyard.toml").write_text(
        "[[alerts.rules]]\n"
        'name = "no-traffic"\nmodel = "diabetes@production"\nmetric = "slo.volume"\n'
        'condition = "< 1"\nwindow = "1h"\nsinks = ["pager"]\n\n'
        '[alerts.sinks.pager]\ntype = "file"\npath = "alerts.jsonl"\n\n'
        '[jobs.monitor]\nfunction = "modelyard.jobs:monitor_check"\nschedule = "*/15 * * * *"\n'
    )
    code, out, _ = run_cli(capsys, "jobs", "run", "monitor", "-w", str(root))
    assert code == 0, out
    ws = modelyard.Workspace(root)
    try:
        (run,) = JobHistory(ws.metadata).runs("monitor")
        assert "rule no-traffic: firing" in run.log
        assert [a["rule"] for a in alerts(ws)] == ["no-traffic"]
    finally:
        ws.close()


@pytest.mark.slow
@pytest.mark.parametrize("chosen_by", ["job", "setting"])
def test_the_same_fan_out_job_runs_on_ray(
    sqlite_workspace: modelyard.Workspace, chosen_by: str, ray_executor: Any
) -> None:
    import os

    root = sqlite_workspace.root
    (root / "pipelines.py").write_text(PIPELINES)
    option = 'executor = "ray"\n' if chosen_by == "job" else ""
    (root / "modelyard.toml").write_text(
        '[jobs.fanout]\nfunction = "pipelines:fanout"\npartitions = ["a", "b", "c"]\n'
        f'retries = 1\nretry_delay = "1s"\n{option}'
    )
    environ = {"MODELYARD_EXECUTOR_URL": "ray"} if chosen_by == "setting" else {}
    ws = modelyard.Workspace(root, environ=environ)
    try:
        with open_runner(ws, sleep=lambda _: None) as runner:
            run = run_job(ws, "fanout", runner=runner)
        assert (run.status, run.attempts) == ("success", 2)
        calls = lines(ws, "fanout.jsonl")
        assert sorted((x["partition"], x["attempt"]) for x in calls) == [
            ("a", 1),
            ("b", 1),
            ("b", 2),
            ("c", 1),
        ]
        assert all(x["ppid"] != os.getpid() for x in calls)  # Ray's workers, not ours
        assert "partition b failed once" in run.log
    finally:
        ws.close()


ORDERED = """
import json, time
from pathlib import Path


def _note(ctx, what):
    with open(Path(ctx.root) / "order.jsonl", "a") as f:
        f.write(json.dumps([what, ctx.interval_end.date().isoformat()]) + "\\n")


def features(ctx):
    _note(ctx, "features start")
    time.sleep(0.3)  # long enough for a score started beside it to overtake it
    _note(ctx, "features end")


def scores(ctx):
    _note(ctx, "scores start")
    _note(ctx, "scores end")
"""


def test_after_makes_a_catch_up_run_day_by_day_features_before_scores(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    root = sqlite_workspace.root
    (root / "ordered.py").write_text(ORDERED)
    (root / "modelyard.toml").write_text(
        '[jobs.features]\nfunction = "ordered:features"\nschedule = "0 1 * * *"\n'
        '[jobs.scores]\nfunction = "ordered:scores"\nschedule = "0 2 * * *"\n'
        'after = ["features"]\n'
    )
    ws = modelyard.Workspace(root)
    clock = Clock(at("2026-11-20T03:00"))
    with open_runner(ws, owner="s1") as runner:
        sched = Scheduler(workspace_jobs(ws), runner, clock=clock)
        assert len(run_due(sched)) == 2
        (root / "order.jsonl").unlink()
        clock.now = at("2026-11-24T03:00")  # down for four days: both jobs are behind
        runs = run_due(sched)
        sched.close()
    ws.close()
    assert len(runs) == 8 and all(r.status == "success" for r in runs)
    order = [tuple(x) for x in map(json.loads, (root / "order.jsonl").read_text().splitlines())]
    # Day by day: each day's features, then its scores, then the next day's features.
    days = ("2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24")
    steps = ("features start", "features end", "scores start", "scores end")
    assert order == [(step, day) for day in days for step in steps]


def test_a_closing_scheduler_starts_no_more_slots(sqlite_workspace: modelyard.Workspace) -> None:
    """Ctrl-C or SIGTERM during a catch-up: the run in flight ends, the rest stay due."""
    root = sqlite_workspace.root
    (root / "ordered.py").write_text(ORDERED)
    (root / "modelyard.toml").write_text(
        '[jobs.features]\nfunction = "ordered:features"\nschedule = "0 1 * * *"\n'
    )
    ws = modelyard.Workspace(root)
    clock = Clock(at("2026-11-20T03:00"))
    with open_runner(ws, owner="s1") as runner:
        sched = Scheduler(workspace_jobs(ws), runner, clock=clock)
        run_due(sched)
        clock.now = at("2026-11-24T03:00")  # four days behind
        futures = sched.tick()
        while not (root / "order.jsonl").read_text().count("features start") >= 2:
            time.sleep(0.02)
        sched.close()
        runs = wait_all(futures)
    ws.close()
    assert len(runs) == 1  # the one in flight; three slots stay due for the next scheduler


def test_a_slot_whose_owner_died_on_this_host_is_taken_over_at_once(
    jobs_ws: modelyard.Workspace, scheduled: Callable[..., Scheduler]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    history = JobHistory(jobs_ws.metadata)
    slot = at("2026-11-19T02:00")
    # The lease would hold for an hour: its owner's process has ended, so it is not waited out.
    assert history.claim("daily", slot, f"{socket.gethostname()}:{dead.pid}:abc", lease_s=3600)
    sched = scheduled(Clock(at("2026-11-20T03:00")))
    (run,) = wait_all(sched.tick())
    assert (run.logical_date, run.trigger, run.status) == (slot, "recovery", "success")
    # A live owner here, and an owner on another host, keep their leases.
    for day, owner in ((17, f"{socket.gethostname()}:{os.getpid()}:x"), (18, "elsewhere:1:y")):
        assert history.claim("daily", at(f"2026-11-{day}T02:00"), owner, lease_s=3600)
    assert wait_all(sched.tick()) == []


def test_scheduler_once_runs_what_is_due(
    jobs_ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "scheduler", "--once", "-w", str(jobs_ws.root))
    # 'daily' and 'broken' are scheduled: the newest slot of each runs; 'broken' fails.
    assert code == 1
    runs = {r.job: r for r in JobHistory(jobs_ws.metadata).runs()}
    assert set(runs) == {"daily", "broken"}
    assert runs["daily"].status == "success" and runs["broken"].status == "failed"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    assert runs["daily"].logical_date.date() in (yesterday, yesterday - timedelta(days=1))


def test_run_job_works_from_a_script_without_a_main_guard(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    import subprocess
    import sys

    root = sqlite_workspace.root
    (root / "pipelines.py").write_text(PIPELINES)
    (root / "modelyard.toml").write_text('[jobs.daily]\nfunction = "pipelines:daily"\n')
    # Piped to python's stdin: no file a worker could re-import, and no __main__ guard.
    script = (
        "import modelyard\nfrom modelyard.jobs import run_job\n"
        f"ws = modelyard.Workspace({str(root)!r})\n"
        "print(run_job(ws, 'daily', date='2026-11-24').status)\nws.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "success"
    assert len(lines(sqlite_workspace, "daily.jsonl")) == 1
