"""The blueprint's steps, each safe to run again: the batch sources, the definitions, the
backfill demonstration, training, materialization and the stream replay.

The batch sources are the history (everything published before the stream begins) as
one ``history.parquet`` a view, and one file a day after it: ``movie_stats`` has daily
files for the backfill window, every view gets the stream days' files as they are
replayed. A daily file is named by the time its rows are stamped with (the midnight that
ended the day they describe), so it is exactly one daily backfill partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard._files import atomic_path
from modelyard.blueprints._movielens import DAY
from modelyard.blueprints.featurestore import _aggregates as agg
from modelyard.blueprints.featurestore._data import Timeline
from modelyard.blueprints.featurestore._definitions import (
    ACTIVITY_VIEW,
    ENGAGEMENT_SERVICE,
    MOVIE_VIEW,
    PROFILE_VIEW,
    definitions,
    folders,
)

if TYPE_CHECKING:
    from modelyard.features import BackfillReport
    from modelyard.workspace import Workspace

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Tables:
    """Every view's rows over the whole moved log (what the batch jobs would compute)."""

    activity: pd.DataFrame
    profile: pd.DataFrame
    movies: pd.DataFrame

    @classmethod
    def of(cls, ratings: pd.DataFrame) -> Tables:
        return cls(agg.user_activity(ratings), agg.user_profile(ratings), agg.movie_stats(ratings))

    def before(self, when: datetime) -> dict[str, pd.DataFrame]:
        """Each view's rows stamped before ``when``: the tables as they were then."""
        stamp = pd.Timestamp(when)
        return {
            ACTIVITY_VIEW: self.activity[self.activity["event_timestamp"] < stamp],
            PROFILE_VIEW: self.profile[self.profile["event_timestamp"] < stamp],
            MOVIE_VIEW: self.movies[self.movies["event_timestamp"] < stamp],
        }


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as staged:
        frame.to_parquet(staged, index=False)


def day_file(folder: Path, stamp: datetime) -> Path:
    return folder / f"{stamp:%Y-%m-%d}.parquet"


def write_history(root: Path, tables: Tables, timeline: Timeline) -> None:
    """The batch sources as they stood when the stream began."""
    paths = folders(root)
    upto = tables.before(timeline.stream_start)
    write_parquet(paths[ACTIVITY_VIEW] / "history.parquet", upto[ACTIVITY_VIEW])
    write_parquet(paths[PROFILE_VIEW] / "history.parquet", upto[PROFILE_VIEW])
    movies = upto[MOVIE_VIEW]
    window = pd.Timestamp(timeline.window_start)
    write_parquet(paths[MOVIE_VIEW] / "history.parquet", movies[movies["event_timestamp"] < window])
    day = timeline.window_start
    while day < timeline.stream_start:
        rows = movies[movies["event_timestamp"] == pd.Timestamp(day)]
        write_parquet(day_file(paths[MOVIE_VIEW], day), rows)
        day += DAY


def declare(ws: Workspace, root: Path) -> None:
    """Apply the definitions (unchanged ones keep their version)."""
    ws.features.apply(definitions(root))


@dataclass(frozen=True)
class BackfillDemo:
    bad_day: datetime
    first: BackfillReport  # the bad day rejected, the others written
    rerun: BackfillReport  # after the file was fixed: the range complete


def backfill_demo(
    ws: Workspace, root: Path, tables: Tables, timeline: Timeline, bad_day: int
) -> BackfillDemo | None:
    """Break one day's ``movie_stats`` file, backfill the window (that day is rejected with
    every check it fails, the others land), fix the file, backfill again (it completes)."""
    if bad_day == 0:
        report = ws.features.backfill(MOVIE_VIEW, timeline.window_start, timeline.stream_start)
        return None if report.ok else BackfillDemo(timeline.window_start, report, report)
    stamp = timeline.window_start + (bad_day - 1) * DAY
    path = day_file(folders(root)[MOVIE_VIEW], stamp)
    good = tables.movies[tables.movies["event_timestamp"] == pd.Timestamp(stamp)]
    movies = np.sort(tables.movies["movie_id"].unique())
    write_parquet(path, agg.broken(good, movies, stamp))
    first = ws.features.backfill(MOVIE_VIEW, timeline.window_start, timeline.stream_start)
    write_parquet(path, good)  # the upstream job is fixed and writes the day again
    rerun = ws.features.backfill(MOVIE_VIEW, timeline.window_start, timeline.stream_start)
    return BackfillDemo(stamp, first, rerun)


def materialize(ws: Workspace, until: datetime) -> int:
    """Every online view's latest values up to ``until``; returns the rows written."""
    return sum(r.rows for r in ws.features.materialize(EPOCH, until))


def ratings_of(ratings: pd.DataFrame, day: datetime) -> pd.DataFrame:
    return ratings[(ratings["ts"] >= pd.Timestamp(day)) & (ratings["ts"] < day + DAY)]


def publish_batch(ws: Workspace, root: Path, tables: Tables, stamp: datetime) -> None:
    """The batch views' rows stamped ``stamp`` as that day's files, then materialized."""
    paths = folders(root)
    wrote = []
    for view, table in ((PROFILE_VIEW, tables.profile), (MOVIE_VIEW, tables.movies)):
        rows = table[table["event_timestamp"] == pd.Timestamp(stamp)]
        if len(rows):
            write_parquet(day_file(paths[view], stamp), rows)
            wrote.append(view)
    if wrote:
        ws.features.materialize(stamp - DAY, stamp, views=wrote)


def stream_rows(ratings: pd.DataFrame, day: datetime) -> pd.DataFrame:
    """The stream's rows for ``day``'s ratings (the same function as the history's)."""
    seen = ratings[ratings["ts"] < pd.Timestamp(day + DAY)]
    return agg.user_activity(seen, since=day)


def push_day(ws: Workspace, ratings: pd.DataFrame, day: datetime) -> int:
    """``day``'s stream rows, pushed offline and online in one call."""
    rows = stream_rows(ratings, day)
    return ws.features.push(ACTIVITY_VIEW, rows) if len(rows) else 0


@dataclass(frozen=True)
class PushDemo:
    user: int
    day: datetime
    before: Any  # ratings_30d online before the push (None: missing or expired)
    after: Any
    status_before: str
    pushed_rows: int
    visible_ms: float  # from the push call to the read that returned the new value


def push_demo(ws: Workspace, ratings: pd.DataFrame, day: datetime) -> PushDemo:
    """Push ``day``'s ratings (the stream's last day) and show one user's value change: the
    online value is read, the day is pushed, and the next read returns the new value."""
    import time

    todays = ratings_of(ratings, day)
    user = int(todays["user_id"].value_counts().index[0])
    reader = ws.features.online_reader(ENGAGEMENT_SERVICE)
    before = reader.read({"user_id": [user]})
    rows = stream_rows(ratings, day)
    start = time.perf_counter()
    pushed = ws.features.push(ACTIVITY_VIEW, rows)
    after = reader.read({"user_id": [user]})
    visible = (time.perf_counter() - start) * 1000
    return PushDemo(
        user,
        day,
        before.values["ratings_30d"][0],
        after.values["ratings_30d"][0],
        before.status["ratings_30d"][0],
        pushed,
        visible,
    )
