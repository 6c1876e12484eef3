"""The churn pipeline's calendar: its history laid out once, then its schedules replayed
on a simulated clock.

A team runs the pipeline under ``modelyard scheduler`` on the real calendar. To see
months of it in minutes, the replay drives the same scheduler (the same job specs,
slots, retries, SLAs, history and alerts) with a clock that jumps from one due slot to
the next instead of waiting for it: features at 01:00, scores at 02:00, drift at 03:00,
training on Sundays at 04:00, day after day. How far the calendar has gone is kept in
``.modelyard/churn/clock.json``, so the next replay goes on from there.

Before the first replay, ``bootstrap`` backfills the features of the ``LONGEST`` (90)
days before day 0 (history for the windows) and of the ``BEGIN_DAY`` (91) days after it
(whose labels are known by then: the first model's data) with the features job,
trains the first model on them and releases it through the gates (a first release has
no champion to beat), and begins the calendar on day ``BEGIN_DAY`` for the other jobs,
so none of them reaches back past it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard._files import atomic_write_text
from modelyard.blueprints.churn._config import ChurnSettings
from modelyard.blueprints.churn._daily import LONGEST, day_name
from modelyard.blueprints.churn._pipeline import CLOCK_FILE, DAY, Folders, clock_of
from modelyard.blueprints.churn._simulate import LAST_LEAVING_DAY
from modelyard.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from modelyard.jobs import JobRun, JobSpec, Runner
    from modelyard.workspace import Workspace

JOBS = ("churn-features", "churn-score", "churn-drift", "churn-train")
BEGIN_DAY = 91  # the calendar's first day: the days before it are the first model's data
# The clock stands here on each day: after the slots that work on the day before (01:00 to
# 04:00), so a replay of N days runs every slot of N whole days.
CLOCK_HOUR = timedelta(hours=6)


@dataclass(frozen=True)
class Replayed:
    """What a replay did: from when to when, and every run, oldest first."""

    since: datetime
    until: datetime
    runs: list[JobRun]


def _save_clock(ws: Workspace, now: datetime) -> None:
    path = Folders.of(Path(ws.config.root)).events.parent / CLOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"now": now.isoformat()}))


def pipeline_jobs(ws: Workspace, *, executor: str | None = None) -> dict[str, JobSpec]:
    """The workspace's four pipeline jobs (``executor`` overrides the scoring job's)."""
    from modelyard.jobs import workspace_jobs

    declared = workspace_jobs(ws)
    missing = [name for name in JOBS if name not in declared]
    if missing:
        raise ConfigError(
            f"modelyard.toml declares no job {missing[0]!r}, a step of the churn pipeline; "
            "restore it from the blueprint: modelyard init --blueprint churn NEW_FOLDER"
        )
    jobs = {name: declared[name] for name in JOBS}
    if executor is not None:
        score = jobs["churn-score"]
        jobs["churn-score"] = replace(score, params={**score.params, "executor": executor})
    return jobs


def bootstrap(
    ws: Workspace,
    settings: ChurnSettings,
    runner: Runner,
    *,
    on_run: Callable[[JobRun], None] | None = None,
) -> JobRun | None:
    """Features of the history days, the first model released, the calendar begun.

    Does only what is missing: a workspace whose model is in production already gets
    nothing new. Returns the first training's run (None when there was nothing to do)."""
    from modelyard.jobs import backfill, run_job

    jobs = pipeline_jobs(ws)
    if has_production(ws, settings):
        return None
    runs = backfill(
        ws,
        "churn-features",
        start=day_name(settings.start, -LONGEST),
        end=day_name(settings.start, BEGIN_DAY - 1),
        runner=runner,
        on_run=on_run,
    )
    failed = [r for r in runs if r.status != "success"]
    if failed:
        raise InvalidInputError(
            f"the history's features failed for {len(failed)} day(s), first "
            f"{failed[0].logical_date:%Y-%m-%d}: {failed[0].error}; see 'modelyard jobs logs "
            f"{failed[0].run_id[:12]}', fix it and run the quickstart again"
        )
    # The calendar's clock: every slot due by then has run. The first model, and the
    # scores and drift check of the day before the calendar's first, are the jobs' own
    # first runs (of the newest slot each had due then), so that no job reaches back
    # past the calendar later and their runs show in the job history like every other.
    begin = settings.start + BEGIN_DAY * DAY + CLOCK_HOUR
    first = None
    for name in ("churn-train", "churn-score", "churn-drift"):
        schedule = jobs[name].schedule
        assert schedule is not None
        slot = schedule.due(None, begin)[0]
        run = run_job(ws, name, date=slot.isoformat(), runner=runner)
        if on_run is not None:
            on_run(run)
        if run.status != "success":
            raise InvalidInputError(
                f"the pipeline's first {name} run failed: {run.error}; see 'modelyard jobs "
                f"logs {run.run_id[:12]}', fix it and run the quickstart again"
            )
        first = first or run
    _save_clock(ws, begin)
    return first


def has_production(ws: Workspace, settings: ChurnSettings) -> bool:
    """Whether the pipeline's model has been released (the bootstrap is done)."""
    from modelyard.errors import NotFoundError

    try:
        ws.registry.get(f"{settings.model_name}@production")
    except NotFoundError:
        return False
    return True


def replay(
    ws: Workspace,
    settings: ChurnSettings,
    days: int,
    runner: Runner,
    *,
    executor: str | None = None,
    on_tick: Callable[[datetime, Sequence[JobRun]], None] | None = None,
) -> Replayed:
    """Run every slot of the pipeline's jobs that falls due in the next ``days`` days of
    the simulated calendar, in time order, each slot's runs finished before the next."""
    from modelyard.jobs import Scheduler, run_due

    since = clock_of(ws)
    if since is None:
        raise InvalidInputError(
            "the churn calendar has not begun; run 'modelyard quickstart --blueprint churn' "
            "first (it lays out the history and releases the first model)"
        )
    since = aligned(settings, since)
    until = since + days * DAY
    if not settings.events.path:
        _check_horizon(settings, until)
    now = since
    jobs = pipeline_jobs(ws, executor=executor)
    scheduler = Scheduler(jobs, runner, clock=lambda: now, trigger="replay")
    runs: list[JobRun] = []
    try:
        while True:
            upcoming = scheduler.next_due(now)
            if upcoming is None or upcoming > until:
                break
            now = upcoming
            _save_clock(ws, now)  # first: the tick's steps see the calendar reach their day
            made = run_due(scheduler, now)
            runs += made
            if on_tick is not None:
                on_tick(now, made)
    finally:
        scheduler.close()
    _save_clock(ws, until)
    return Replayed(since, until, runs)


def aligned(settings: ChurnSettings, clock: datetime) -> datetime:
    """The clock at the start of the day it is in (``CLOCK_HOUR``): a replay that was
    stopped saved it between two slots of a day, whose slots that ran are in the history
    and are not run again."""
    return clock - (clock - settings.start - CLOCK_HOUR) % DAY


def _check_horizon(settings: ChurnSettings, until: datetime) -> None:
    last = int((until - settings.start) / DAY)
    if last > LAST_LEAVING_DAY:
        raise InvalidInputError(
            f"the replay would reach day {last}, past day {LAST_LEAVING_DAY}, by which every "
            "simulated churner has left (training would find no churner to learn from); "
            "replay fewer days, or start a new workspace"
        )


def default_start(replayed: int, today: datetime | None = None) -> datetime:
    """Day 0 for a new workspace: so that a first replay of ``replayed`` days, from day
    ``BEGIN_DAY``, ends today (UTC midnight) and the dashboard's 30-day charts hold it."""
    now = (today or datetime.now(UTC)).astimezone(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return midnight - timedelta(days=replayed + BEGIN_DAY)
