"""The offline path: training rows for both models, their point-in-time training sets, and
the naive latest-value join beside them, to show what it leaks.

Rating rows are the ratings themselves, each asked one second before it was given: the
features a model may use are those known before the user rated (ratings given in the
same second are not). Engagement rows are the end of every day a user rated; the label
says whether they rate again within 30 days. The point-in-time join reads, per row, each
feature's latest value at or before the row's time; the naive join takes each key's
latest value in the tables as they are now, as a hand-written ``merge`` on the current
feature table would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard.blueprints.featurestore._definitions import (
    DEFAULTS,
)

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

HORIZON = timedelta(days=30)  # engagement: rates again within this long
ASKED_BEFORE = pd.Timedelta(seconds=1)


def rating_rows(ratings: pd.DataFrame, until: datetime) -> pd.DataFrame:
    """One row per rating before ``until``: the keys, the time just before it, the stars."""
    past = ratings[ratings["ts"] < pd.Timestamp(until)]
    return pd.DataFrame(
        {
            "user_id": past["user_id"].to_numpy(),
            "movie_id": past["movie_id"].to_numpy(),
            "event_timestamp": (past["ts"] - ASKED_BEFORE).to_numpy(),
            "rating": past["rating"].to_numpy(),
        }
    )


def engagement_rows(ratings: pd.DataFrame, until: datetime) -> pd.DataFrame:
    """One row per user and day they rated, at the day's end, whose next 30 days end by
    ``until``; ``engaged`` = 1 if the user rates again within them."""
    frame = ratings[ratings["ts"] < pd.Timestamp(until)].sort_values(["user_id", "ts"])
    cutoffs = (
        frame.assign(event_timestamp=frame["ts"].dt.floor("D") + pd.Timedelta(days=1))
        .drop_duplicates(["user_id", "event_timestamp"])[["user_id", "event_timestamp"]]
        .reset_index(drop=True)
    )
    cutoffs = cutoffs[cutoffs["event_timestamp"] + HORIZON <= pd.Timestamp(until)]
    # The next rating after each cut-off, per user: one sorted search over (user, time).
    epoch = pd.Timestamp(0, tz="UTC")
    seconds = ((frame["ts"] - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    keys = (frame["user_id"].to_numpy(np.int64) << 40) | seconds
    cut = ((cutoffs["event_timestamp"] - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    users = cutoffs["user_id"].to_numpy(np.int64)
    at = np.searchsorted(keys, (users << 40) | cut, side="right")  # the first rating after
    found = at < len(keys)
    nxt = np.where(found, keys[np.minimum(at, len(keys) - 1)], 0)
    same_user = found & ((nxt >> 40) == users)
    soon = same_user & ((nxt & ((1 << 40) - 1)) <= cut + int(HORIZON.total_seconds()))
    return cutoffs.assign(engaged=soon.astype(np.int64)).reset_index(drop=True)


def point_in_time(ws: Workspace, rows: pd.DataFrame, service: str, run: Any) -> pd.DataFrame:
    """``rows`` with the service's features as of each row's time; missing values (no row
    yet, or an expired one) read as ``DEFAULTS``, as the server reads them. The training
    run records the service's lineage (versions, source fingerprints)."""
    found: pd.DataFrame = ws.features.get_historical(rows, service, run=run)
    return fill_defaults(found)


def fill_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for name, default in DEFAULTS.items():
        if name in out.columns:
            filled = out[name].astype("float64").fillna(default)
            out[name] = filled.astype("int64") if isinstance(default, int) else filled
    return out


@dataclass(frozen=True)
class NaiveJoin:
    """The naive training set and, per view, how many of its rows read a later value."""

    table: pd.DataFrame
    future_rows: dict[str, int]  # view -> rows whose value was written after the row's time
    any_future: int  # rows with at least one such value


def naive_join(
    rows: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    features: dict[str, list[str]],
    keys: dict[str, str],
) -> NaiveJoin:
    """Each key's newest row of each view, joined to ``rows`` by its join key ``keys[view]``
    alone (no time)."""
    out = rows.copy()
    future = np.zeros(len(rows), dtype=bool)
    per_view: dict[str, int] = {}
    for view, names in features.items():
        key = keys[view]
        newest = (
            tables[view]
            .sort_values("event_timestamp")
            .drop_duplicates(key, keep="last")[[key, "event_timestamp", *names]]
            .rename(columns={"event_timestamp": "__written"})
        )
        out = out.merge(newest, on=key, how="left")
        later = (out["__written"] > out["event_timestamp"]).to_numpy()
        per_view[view] = int(later.sum())
        future |= later
        out = out.drop(columns="__written")
    return NaiveJoin(fill_defaults(out), per_view, int(future.sum()))
