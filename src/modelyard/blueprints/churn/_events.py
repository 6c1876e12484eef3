"""The churn pipeline's event log: simulated (the default), or a team's own table.

``[blueprint.events]`` points the pipeline at an event table (CSV or Parquet) and names
its columns and its kinds of event; no code changes. The keys (``EventsTable``):

    path      CSV or Parquet with one row per event ("": simulate the events)
    id        column of the customer id (the ids of the customer table)
    ts        column of the event time (a timestamp; one without a zone is UTC)
    kind      column of the kind of event
    count     column of how many (sessions, contacts; 1 when absent from a row)
    amount    column of how much (minutes of use, money billed)
    kinds     {pipeline kind = your level}: usage, bill, support, plan_change, leave

A customer has left from their first ``leave`` event on; the training labels ("leaves
within 30 days") come from those events, as they come from the simulator's leaving day
when the events are simulated. Every mistake is one ``InvalidInputError`` naming the key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from modelyard.blueprints.churn._simulate import EVENT_COLUMNS, simulate_day
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.blueprints.churn._config import ChurnSettings
    from modelyard.workspace import Workspace

KINDS = ("usage", "bill", "support", "plan_change", "leave")


class EventsTable(BaseModel):
    """Where the pipeline's event columns are in a team's table (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = ""
    id: str = "customer_id"
    ts: str = "ts"
    kind: str = "kind"
    count: str = "count"
    amount: str = "amount"
    kinds: dict[str, str] = Field(default_factory=lambda: {k: k for k in KINDS})


def events_of_day(
    ws: Workspace,
    settings: ChurnSettings,
    customers: pd.DataFrame,
    leaving: np.ndarray,
    day: int,
) -> pd.DataFrame:
    """The events of ``day`` (``EVENT_COLUMNS``): the team's, or simulated ones."""
    table = settings.events
    if not table.path:
        return simulate_day(
            customers,
            day,
            start=settings.start,
            seed=settings.seed,
            drift_day=settings.drift_day,
            leaving=leaving,
        )
    events = read_events(table, Path(ws.config.root))
    begin = pd.Timestamp(settings.start + timedelta(days=day))
    inside = (events["ts"] >= begin) & (events["ts"] < begin + pd.Timedelta(days=1))
    return events[inside].reset_index(drop=True)


def leaving_days(
    table: EventsTable, root: Path, customers: pd.DataFrame, start: datetime
) -> np.ndarray:
    """Each customer's first ``leave`` day (0 is ``start``; NaN: never left)."""
    events = read_events(table, root)
    left = events[events["kind"] == "leave"].groupby("customer_id")["ts"].min()
    days = pd.Series(
        np.floor((left - pd.Timestamp(start.astimezone(UTC))) / pd.Timedelta(days=1)),
        index=left.index,
    )
    found: np.ndarray = customers["customer_id"].map(days).to_numpy(np.float64)
    return found


def read_events(table: EventsTable, root: Path) -> pd.DataFrame:
    """The whole event table as ``EVENT_COLUMNS``, kinds renamed to the pipeline's."""
    path = Path(table.path) if Path(table.path).is_absolute() else root / table.path
    if not path.is_file():
        raise InvalidInputError(f"[blueprint.events] path {table.path!r}: no such file")
    return _read(path, path.stat().st_mtime, table.model_dump_json())


@lru_cache(maxsize=2)
def _read(path: Path, stamp: float, mapping: str) -> pd.DataFrame:
    table = EventsTable.model_validate_json(mapping)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InvalidInputError(f"[blueprint.events] path {table.path!r}: read CSV or Parquet only")
    raw = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    source = str(path)
    columns = {"id": table.id, "ts": table.ts, "kind": table.kind, "amount": table.amount}
    for key, column in columns.items():
        if column not in raw.columns:
            have = ", ".join(map(str, raw.columns[:12]))
            raise InvalidInputError(
                f"{source} has no column {column!r} ([blueprint.events] {key}); its columns: {have}"
            )
    unknown = sorted(set(table.kinds) - set(KINDS))
    if unknown:
        raise InvalidInputError(
            f"[blueprint.events] kinds: {unknown[0]!r} is not a kind of the pipeline; "
            f"the kinds are {', '.join(KINDS)}"
        )
    ours = {level: kind for kind, level in table.kinds.items()}
    kinds = raw[table.kind].astype(str).map(ours)
    stamps = pd.to_datetime(raw[table.ts], errors="coerce", utc=True)
    if stamps.isna().any():
        bad = raw[table.ts][stamps.isna()].iloc[0]
        raise InvalidInputError(
            f"{source}: column {table.ts!r} ([blueprint.events] ts) has a value that is not "
            f"a time: {bad!r}"
        )
    counts = raw[table.count] if table.count in raw.columns else pd.Series(1, index=raw.index)
    frame = pd.DataFrame(
        {
            "customer_id": raw[table.id].astype(str),
            "ts": stamps,
            "kind": kinds,
            "count": pd.to_numeric(counts, errors="coerce").fillna(1).astype(np.int64),
            "amount": pd.to_numeric(raw[table.amount], errors="coerce").fillna(0.0),
        }
    )
    # Kinds the pipeline does not know (a team's other events) are kept out, not refused.
    return frame[frame["kind"].notna()][list(EVENT_COLUMNS)].reset_index(drop=True)
