"""Running jobs from code or the command line: once, over a range, or on a schedule."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelyard._time import parse_time
from modelyard.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError
from modelyard.jobs._context import JobContext
from modelyard.jobs._cron import logical_date_for
from modelyard.jobs._executors import Executors
from modelyard.jobs._history import JobHistory, JobRun, default_owner
from modelyard.jobs._logs import log_dir
from modelyard.jobs._runner import Runner
from modelyard.jobs._spec import JobSpec, load_jobs

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


def workspace_jobs(ws: Workspace) -> dict[str, JobSpec]:
    """The workspace's jobs, with every sink they name checked against ``[alerts.sinks]``."""
    jobs = load_jobs(ws.config.tables.get("jobs", {}), ws.config.root, "modelyard.toml")
    sinks = ws.alerting.sinks
    for spec in jobs.values():
        missing = [s for s in spec.sinks if s not in sinks]
        if missing:
            raise ConfigError(
                f"modelyard.toml: job {spec.name!r} sends to sink {missing[0]!r}, which is not "
                f"declared; add [alerts.sinks.{missing[0]}] or use one of: {', '.join(sinks)}"
            )
    return jobs


def get_job(ws: Workspace, name: str) -> JobSpec:
    jobs = workspace_jobs(ws)
    if name not in jobs:
        known = ", ".join(jobs) or "none are declared"
        raise NotFoundError(
            f"no job named {name!r} (jobs: {known}); declare it as [jobs.{name}] in "
            "modelyard.toml or with @job in a module of jobs.modules"
        )
    return jobs[name]


@contextmanager
def open_runner(
    ws: Workspace,
    *,
    owner: str | None = None,
    lease_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] | None = None,
) -> Iterator[Runner]:
    """A runner on the workspace's metadata store; its worker processes end with the block.

    Jobs run on the executor of the workspace's ``executor.url``, or on the one they name.
    ``echo`` gets each run's log as it is written (whole lines).
    """
    executors = Executors(ws.executor.url)  # ws.executor checks the setting, naming its source
    try:
        yield Runner(
            root=ws.config.root,
            log_dir=log_dir(ws),
            history=JobHistory(ws.metadata),
            executors=executors,
            alerting=ws.alerting,
            owner=owner or default_owner(),
            lease_s=lease_s,
            sleep=sleep,
            echo=echo,
        )
    finally:
        executors.close()


def run_job(
    ws: Workspace,
    name: str,
    *,
    date: str | None = None,
    now: datetime | None = None,
    runner: Runner | None = None,
    assume_utc: bool = False,
    echo: Callable[[str], None] | None = None,
    retries: int | None = None,
) -> JobRun:
    """Run ``name`` once for one logical date (default: the newest complete interval).

    A rerun of a date that already ran runs again (the function sees the same interval,
    so an idempotent job rewrites the same output); a date running right now is refused.
    ``date`` is a day or a time with a zone; ``assume_utc`` reads one without as UTC.
    ``echo`` (without ``runner``; a runner has its own) gets the log as it is written.
    ``retries`` overrides the job's (0: one attempt, no waiting between attempts).
    """
    spec = get_job(ws, name)
    if retries is not None:
        if retries < 0:
            raise InvalidInputError(f"retries {retries}: give 0 or more")
        spec = replace(spec, retries=retries)
    when = now or datetime.now(UTC)
    logical = logical_date_for(spec.schedule, date, when, assume_utc=assume_utc)
    if runner is None:
        with open_runner(ws, echo=echo) as own:
            return _run_claimed(spec, logical, own, "manual")
    return _run_claimed(spec, logical, runner, "manual")


def _run_claimed(spec: JobSpec, logical: datetime, runner: Runner, trigger: str) -> JobRun:
    if not runner.history.claim(spec.name, logical, runner.owner, runner.lease_s, force=True):
        slot = runner.history.slot(spec.name, logical) or {}
        raise ConflictError(
            f"job {spec.name} is already running for {logical:%Y-%m-%dT%H:%M:%S} "
            f"(owner {slot.get('owner', '?')}); wait for it, or look at 'modelyard jobs runs'"
        )
    return runner.execute(spec, logical, trigger=trigger)


def backfill(
    ws: Workspace,
    name: str,
    *,
    start: str,
    end: str,
    rerun: bool = False,
    runner: Runner | None = None,
    on_run: Callable[[JobRun], None] | None = None,
    assume_utc: bool = False,
    echo: Callable[[str], None] | None = None,
) -> list[JobRun]:
    """Run every slot of ``name`` with ``start <= logical date <= end``, oldest first.

    Slots that already succeeded are left alone unless ``rerun``; a failed slot does not
    stop the others. ``start`` and ``end`` are days or times with a zone; ``assume_utc``
    reads times without one as UTC. ``echo`` (without ``runner``) gets each run's log
    as it is written.
    """
    spec = get_job(ws, name)
    if spec.schedule is None:
        raise InvalidInputError(
            f"job {name} has no schedule, so it has no slots to backfill; give it "
            "schedule = '…' or run it with 'modelyard jobs run --date'"
        )
    first = parse_time(start, "--start", assume_utc=assume_utc)
    last = parse_time(end, "--end", assume_utc=assume_utc)
    if len(end.strip()) == 10:  # a bare day ends with that day: its slots are included
        last += timedelta(days=1) - timedelta(microseconds=1)
    if last < first:
        raise InvalidInputError(f"--end {end} is before --start {start}; swap them")
    slots = spec.schedule.between(first, last)
    if not slots:
        raise InvalidInputError(
            f"no slot of schedule '{spec.schedule.cron}' lies between {start} and {end}"
        )

    def go(r: Runner) -> list[JobRun]:
        runs = []
        for logical in slots:
            slot = r.history.slot(spec.name, logical)
            if slot is not None and slot["state"] == "success" and not rerun:
                continue
            run = _run_claimed(spec, logical, r, "backfill")
            runs.append(run)
            if on_run is not None:
                on_run(run)
        return runs

    if runner is None:
        with open_runner(ws, echo=echo) as own:
            return go(own)
    return go(runner)


def compact_predictions(ctx: JobContext) -> dict[str, Any]:
    """A job that keeps the prediction log small (``function =
    "modelyard.jobs:compact_predictions"``): ships this host's leftovers, merges small
    parts per model and day, and with ``params = { keep_days = 90 }`` drops older days.
    """
    keep = ctx.params.get("keep_days")
    min_age = ctx.params.get("min_age_s", 3600.0)
    done = ctx.workspace.predictions.maintain(keep_days=keep, min_age_s=float(min_age))
    ctx.log.info(
        "prediction log: shipped %d records, merged %d parts into %d, deleted %d parts",
        done.records_shipped,
        done.parts_merged,
        done.parts_written,
        done.parts_deleted,
    )
    return done.as_dict()


def monitor_check(ctx: JobContext) -> dict[str, Any]:
    """A job that evaluates the alert rules (``function = "modelyard.jobs:monitor_check"``).

    With ``params = { fail_on_firing = true }`` the run fails while a rule fires.
    """
    from modelyard.monitoring import Checker, SampleSize

    ws = ctx.workspace
    sample = SampleSize.of(ws.config)
    checker = Checker(ws.metadata, ws.registry, ws.predictions, ws.features, sample=sample)
    results = checker.run(ws.alerting)
    states = {r.rule.name: r.state for r in results}
    for rule, state in states.items():
        ctx.log.info("rule %s: %s", rule, state)
    # A rule whose notice could not be delivered still fires: it must not pass the job.
    firing = sorted(rule for rule, s in states.items() if s in ("firing", "undelivered"))
    if firing and ctx.params.get("fail_on_firing"):
        raise RuntimeError(f"alert rules firing: {', '.join(firing)}")
    return {"checked": len(states), "firing": firing}
