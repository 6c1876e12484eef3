"""Drift of served traffic: the prediction log's inputs over a window, against the
reference profile stored with the model version that answered them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.compute as pc

from modelyard import _time
from modelyard.contracts import Profile
from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.monitoring._drift import DriftReport, drift
from modelyard.monitoring._sample import DEFAULT_MIN_ROWS

if TYPE_CHECKING:
    from modelyard.backends.predictions import PredictionLog
    from modelyard.registry import Registry


def parse_window(text: str) -> timedelta:
    """``30s``, ``30m``, ``1h``, ``1d``, ``2w`` -> a timedelta."""
    return _time.parse_duration(text, "window")


def logged_inputs(
    log: PredictionLog, model: str, version: int, since: datetime, until: datetime
) -> pd.DataFrame:
    """The inputs a model version answered between ``since`` and ``until``, one row each,
    with its outputs as ``output.<name>`` (drift of them where the reference has them)."""
    table = log.read(model, since=since)
    if table.num_rows:
        keep = pc.and_(
            pc.equal(table["version"], version),
            pc.and_(pc.greater_equal(table["ts"], since), pc.less(table["ts"], until)),
        )
        table = table.filter(keep)
    names = [c for c in table.column_names if c.startswith(("input.", "output."))]
    frame = table.select(names).to_pandas() if table.num_rows else pd.DataFrame()
    return frame.rename(columns={c: c[len("input.") :] for c in names if c.startswith("input.")})


def comparable(reference: Profile, columns: Iterable[str]) -> Profile:
    """``reference`` without the output columns (``output.<name>``) that ``columns`` lack:
    a file of inputs is compared on its inputs, logged traffic on its outputs too."""
    present = set(columns)
    kept = {
        name: col
        for name, col in reference.columns.items()
        if name in present or not name.startswith("output.")
    }
    if len(kept) == len(reference.columns):
        return reference
    return reference.model_copy(update={"columns": kept})


def reference_of(registry: Registry, ref: str) -> tuple[Any, Profile]:
    """(the version ``ref`` names, its reference profile), or a one-line NotFoundError."""
    version = registry.get(ref)
    reference = registry.reference_profile(version)
    if reference is None:
        raise NotFoundError(
            f"{version.ref} has no reference profile; log the model with "
            "ws.registry.log_model(run, model, input_example=..., reference_data=TRAINING_ROWS)"
        )
    return version, reference


def resolve_model(registry: Registry, ref: str) -> tuple[str, int | None]:
    """(model name, version) of NAME@ALIAS or NAME/VERSION; (NAME, None) for every version
    of NAME, after checking the model exists (a typo gets the registry's one-line error)."""
    if "@" in ref or "/" in ref:
        found = registry.get(ref)
        return found.name, found.version
    registry.versions(ref)
    return ref, None


def window_inputs(
    registry: Registry, ref: str, log: PredictionLog, window: timedelta, now: datetime
) -> tuple[Any, Profile, pd.DataFrame]:
    """(version, its reference profile, the inputs it answered in the window, which may be
    empty), with the columns of the reference that the log has."""
    version, reference = reference_of(registry, ref)
    current = logged_inputs(log, version.name, version.version, now - window, now)
    columns = [c for c in reference.columns if c in current.columns]
    return version, comparable(reference, columns), current[columns]


def newest_window_end(
    log: PredictionLog, model: str, version: int, window: timedelta, *, now: datetime
) -> datetime | None:
    """Where the newest ``window`` of a version's logged rows that holds any ends: ``now``
    when the last ``window`` holds one, else at the end of the hour of its newest row (a
    pipeline that replays past days logs their rows at their times); None when it logged
    none."""
    table = log.read(model)
    if table.num_rows:
        table = table.filter(pc.equal(table["version"], version))
    if not table.num_rows:
        return None
    stamps = table["ts"]
    recent = pc.and_(pc.greater_equal(stamps, now - window), pc.less(stamps, now))
    if pc.any(recent).as_py():
        return now
    newest: datetime = pc.max(stamps).as_py()
    # A whole hour, as the report's hourly rows; [since, until) holds the newest row.
    return newest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def window_drift(
    registry: Registry,
    ref: str,
    log: PredictionLog,
    window: timedelta,
    *,
    now: datetime | None = None,
    thresholds: dict[str, dict[str, float]] | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> tuple[Any, DriftReport]:
    """(the model version, drift of its logged inputs over the last ``window``); below
    ``min_rows`` logged rows the report says "not enough data" and judges nothing."""
    version, reference, current = window_inputs(
        registry, ref, log, window, now or datetime.now(UTC)
    )
    if current.empty:
        raise InvalidInputError(
            f"no predictions of {version.ref} in the last {window}; serve some traffic, "
            "widen --window, or compare a file with --current"
        )
    return version, drift(reference, current, thresholds=thresholds, min_rows=min_rows)
