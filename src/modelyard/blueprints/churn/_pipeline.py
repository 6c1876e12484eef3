"""The churn pipeline's steps, one per job, each for one day of the simulated calendar.

A step is called with the end of its job's slot (``ctx.interval_end``, or the time a
replay has reached) and works on the newest day that has ended by then: features at
01:00 for yesterday, scores at 02:00, drift at 03:00, a training on Sundays at 04:00
(the template's schedules). Every output of a day is rewritten whole (the day's Parquet
files, its rows in the scores table), so a rerun of a day replaces it.

    features  the day's events (simulated, or taken from the events table the config
              names), then every customer's features as of the day's end; the view's
              checks (ranges, nulls, freshness) must pass before the day's file is
              written; then the online store is brought up to the day's end
    train     a training set at daily cut-offs (labels known by today), the boosted
              model against its baseline, registered as staging and promoted to
              production only through the release gates of ``[release.<model>]``
    score     the day's features of the customers still with us, scored by the model
              at production (``serving.score``: on the job's executor, ``ray`` too),
              written with lineage to the scores table and logged at the day's time
    drift     the model's alert rules checked as of the step's time: drift of the
              day's features and of its scores against the training reference
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelyard.blueprints.churn._calendar import CLOCK_FILE as CLOCK_FILE
from modelyard.blueprints.churn._calendar import DAY as DAY
from modelyard.blueprints.churn._calendar import Folders as Folders
from modelyard.blueprints.churn._calendar import clock_of as clock_of
from modelyard.blueprints.churn._calendar import day_end as day_end
from modelyard.blueprints.churn._calendar import day_ended_by as day_ended_by
from modelyard.blueprints.churn._calendar import require_calendar
from modelyard.blueprints.churn._config import ChurnSettings
from modelyard.blueprints.churn._customers import load_customers
from modelyard.blueprints.churn._daily import (
    FEATURES,
    LONGEST,
    daily_features,
    day_name,
    write_day,
)
from modelyard.blueprints.churn._events import events_of_day
from modelyard.blueprints.churn._features import (
    HORIZON_DAYS,
    VIEW,
    definitions,
    label_rows,
    training_set,
)
from modelyard.blueprints.churn._scores import (
    check_database,
    scored_by,
    scores_frame,
    write_scores,
)
from modelyard.blueprints.churn._simulate import churn_days
from modelyard.blueprints.churn._train import Trained, train
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.backends.executors import Executor
    from modelyard.monitoring import RuleResult
    from modelyard.release import Promotion
    from modelyard.workspace import Workspace

PIPELINE = "churn-pipeline"  # the actor of its promotions


@lru_cache(maxsize=4)
def _customers(
    root: Path,
    mapping: str,
    seed: int,
    events: str,
    start: datetime,
    stamp: tuple[float, float],
) -> tuple[pd.DataFrame, np.ndarray]:
    from modelyard.blueprints.churn._customers import CustomerColumns
    from modelyard.blueprints.churn._events import EventsTable, leaving_days

    customers = load_customers(CustomerColumns.model_validate_json(mapping), root)
    table = EventsTable.model_validate_json(events)
    if table.path:
        return customers, leaving_days(table, root, customers, start)
    return customers, churn_days(customers, seed)


def customers_of(ws: Workspace, settings: ChurnSettings) -> tuple[pd.DataFrame, np.ndarray]:
    """The mapped customer table and each customer's leaving day (NaN: stays), read once
    per process and again when a table's file changes."""
    root = Path(ws.config.root)
    stamp = (_mtime(root, settings.customers.path), _mtime(root, settings.events.path))
    return _customers(
        root,
        settings.customers.model_dump_json(),
        settings.seed,
        settings.events.model_dump_json(),
        settings.start,
        stamp,
    )


def _mtime(root: Path, path: str) -> float:
    if not path:
        return 0.0
    file = Path(path) if Path(path).is_absolute() else root / path
    return file.stat().st_mtime if file.is_file() else 0.0


# -- features ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FeaturesDone:
    day: int
    events: int
    customers: int
    path: Path


def make_features(ws: Workspace, settings: ChurnSettings, when: datetime) -> FeaturesDone:
    """Lay out the day's events and compute every customer's features as of its end."""
    from modelyard.features import FeatureView, run_checks

    day = day_ended_by(settings, when)
    require_calendar(ws, settings, day, -LONGEST, "features")
    folders = Folders.of(Path(ws.config.root))
    customers, leaving = customers_of(ws, settings)
    events = events_of_day(ws, settings, customers, leaving, day)
    write_day(folders.events, settings.start, day, events)
    # The customers still with us at the day's end: one who left gets no new row, so the
    # online store stops serving them once their last row is past the view's ttl.
    frame = daily_features(folders.events, customers[~(leaving <= day)], settings.start, day)
    end = day_end(settings, day)
    view = next(d for d in definitions(folders.features) if d.name == VIEW)
    assert isinstance(view, FeatureView)
    failure = run_checks(view, pa.Table.from_pandas(frame), end - DAY, end)
    if failure is not None:
        raise InvalidInputError(
            f"the features of {day_name(settings.start, day)} fail their check "
            f"{failure}; the day's features were not written (fix the events and rerun "
            "the day: modelyard jobs run churn-features --date DAY)"
        )
    path = write_day(folders.features, settings.start, day, frame)
    _declare(ws, folders.features)
    if day >= 0:  # the history before day 0 only feeds the windows; it is never served
        ws.features.materialize_incremental(end, views=[VIEW])
    return FeaturesDone(day, len(events), len(frame), path)


def _declare(ws: Workspace, folder: Path) -> None:
    """Declare the feature definitions once the view has a day file to read, and again
    when the workspace has moved (the view names its folder by its absolute path, and
    the old one is gone or another workspace's)."""
    from modelyard.errors import NotFoundError
    from modelyard.features import FileSource

    try:
        source = ws.features.view(VIEW).source
    except NotFoundError:
        source = None
    if not (isinstance(source, FileSource) and source.path == str(folder)):
        ws.features.apply(definitions(folder))


# -- training ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainDone:
    day: int
    trained: Trained
    promotion: Promotion
    rows: int


def cutoffs(settings: ChurnSettings, day: int) -> tuple[list[int], int]:
    """(the cut-off days a training on ``day`` learns and validates from, the first
    validation cut-off). Validation: the ``valid_days`` newest cut-offs whose labels
    (leaves within ``HORIZON_DAYS``) are known by the end of ``day``. Training: up to
    ``train_days`` cut-offs before those, ending ``HORIZON_DAYS`` before the first
    validation cut-off, so that no training label looks into the validated period (a
    churner is a positive at every cut-off of their last 30 days: without the gap, the
    model would be judged on departures it learnt)."""
    newest = day + 1 - HORIZON_DAYS
    first_valid = newest - settings.valid_days + 1
    last_train = first_valid - HORIZON_DAYS
    oldest = max(last_train - settings.train_days + 1, 0)  # from day 0 on, windows are full
    if last_train < oldest:
        raise InvalidInputError(
            f"a training on day {day} has no labelled day to learn from: it needs "
            f"{2 * HORIZON_DAYS + settings.valid_days} days of features after day 0 "
            "(labels, a gap, validation); train on a later day"
        )
    return [*range(oldest, last_train + 1), *range(first_valid, newest + 1)], first_valid


def train_model(ws: Workspace, settings: ChurnSettings, when: datetime) -> TrainDone:
    """Train on the labelled cut-offs known at ``when``; promote through the gates."""
    from modelyard.release import promote

    day = day_ended_by(settings, when)
    customers, leaving = customers_of(ws, settings)
    days, first_valid = cutoffs(settings, day)
    _require_feature_days(settings, Path(ws.config.root), [d - 1 for d in days])
    _declare(ws, Folders.of(Path(ws.config.root)).features)
    table = training_set(ws, label_rows(customers, leaving, settings.start, days))
    valid_from = pd.Timestamp(settings.start + first_valid * DAY)
    trained = train(
        ws,
        table,
        valid_from=valid_from,
        missed=settings.costs.missed_churner,
        offer=settings.costs.retention_offer,
        seed=settings.seed,
        name=settings.model_name,
        alias="staging",
    )
    promotion = promote(
        ws, settings.model_name, candidate="staging", to="production", actor=PIPELINE
    )
    return TrainDone(day, trained, promotion, len(table))


def _require_feature_days(settings: ChurnSettings, root: Path, days: list[int]) -> None:
    folder = Folders.of(root).features
    missing = [d for d in days if not (folder / f"{day_name(settings.start, d)}.parquet").exists()]
    if missing:
        first = day_name(settings.start, missing[0])
        raise InvalidInputError(
            f"training needs the features of {len(missing)} day(s) it has not got, from "
            f"{first}; compute them first: modelyard jobs backfill churn-features "
            f"--start {first} --end {day_name(settings.start, missing[-1])}"
        )


# -- scoring ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreDone:
    day: int
    rows: int
    offers: int
    version: int
    seconds: float


def score_customers(
    ws: Workspace,
    settings: ChurnSettings,
    when: datetime,
    *,
    executor: str | Executor | None = None,
) -> ScoreDone:
    """Score the customers still with us on the newest ended day; replace its scores.

    ``executor``: where the rows are scored (an URL such as ``ray``, or an executor);
    the workspace's by default."""
    from modelyard.serving import score

    day = day_ended_by(settings, when)
    require_calendar(ws, settings, day, 0, "scores")
    folders = Folders.of(Path(ws.config.root))
    source = folders.features / f"{day_name(settings.start, day)}.parquet"
    if not source.exists():
        name = day_name(settings.start, day)
        raise InvalidInputError(
            f"no features for {name} to score; run that day's features first: "
            f"modelyard jobs run churn-features --date {name}"
        )
    customers, leaving = customers_of(ws, settings)
    # In Arrow: pandas' isin over string ids took 0.47 s for 100,000 customers.
    features = pq.read_table(source, columns=["customer_id", *FEATURES])
    ids = features["customer_id"]
    staying = pa.array(customers["customer_id"].to_numpy()[~(leaving <= day)], type=ids.type)
    rows = features.filter(pc.is_in(ids, value_set=staying))
    ref = f"{settings.model_name}@production"
    version = ws.registry.get(ref)
    # The scores table last, but reachable first: a day is not half replaced (its output
    # file and the prediction log new, its table rows old) when the database is down.
    check_database(settings.scores_at(Path(ws.config.root)))
    # The input file, where no reader looks; a run killed before it removed it leaves it
    # for the day's next run to replace, not a temporary folder for each kill.
    staged = folders.scored / f".{day_name(settings.start, day)}.inputs"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        inputs = staged / "inputs.parquet"
        pq.write_table(rows, inputs)
        result = score(
            ws.registry,
            f"{version.name}/{version.version}",
            inputs,
            folders.scored / f"{day_name(settings.start, day)}.parquet",
            executor=executor or ws.executor,
            prediction_log=ws.predictions,
            logged_at=when,
            log_key=f"{settings.model_name}/churn-scores/{day_name(settings.start, day)}",
        )
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    scored = pd.read_parquet(result.output)
    table = scores_frame(
        ws, version, scored, day_name(settings.start, day), result.input_fingerprint
    )
    write_scores(settings.scores_at(Path(ws.config.root)), table)
    return ScoreDone(day, len(table), int(table["offer"].sum()), version.version, result.seconds)


# -- drift ------------------------------------------------------------------------------
def check_drift(ws: Workspace, settings: ChurnSettings, when: datetime) -> list[RuleResult]:
    """Check the alert rules on the model as of ``when`` (drift of the day's features and
    scores against the reference of the version that scored them)."""
    from modelyard.monitoring import Checker, SampleSize

    rules = rules_of(ws, settings)
    if not rules:
        return []
    day = day_ended_by(settings, when)
    require_calendar(ws, settings, day, 0, "drift checks")
    name = day_name(settings.start, day)
    versions = scored_by(settings.scores_at(Path(ws.config.root)), name)
    # Checked without the day's scores by the version in production, the rules would see
    # no data and resolve an alert that is firing: the check fails instead, and alerts.
    if not versions:
        raise InvalidInputError(
            f"no scores for {name} to check for drift (its scoring failed or has not run); "
            f"score the day, then check it: modelyard jobs run churn-score --date {name}, "
            f"then modelyard jobs run churn-drift --date {name}"
        )
    production = ws.registry.get(f"{settings.model_name}@production").version
    if production not in versions:
        raise InvalidInputError(
            f"the scores of {name} are by version {max(versions)}, and version {production} "
            f"was promoted since; score the day again, then check it: modelyard jobs run "
            f"churn-score --date {name}, then modelyard jobs run churn-drift --date {name}"
        )
    checker = Checker(
        ws.metadata,
        ws.registry,
        ws.predictions,
        ws.features,
        now=when.astimezone(UTC),
        sample=SampleSize.of(ws.config),
    )
    return checker.run(ws.alerting, rules)


def rules_of(ws: Workspace, settings: ChurnSettings) -> list[str]:
    """The alert rules on the pipeline's model."""
    name = settings.model_name
    return [
        r.name
        for r in ws.alerting.rules
        if r.model is not None and r.model.split("@")[0].split("/")[0] == name
    ]
