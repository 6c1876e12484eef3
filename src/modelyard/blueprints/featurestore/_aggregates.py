"""The feature pipelines: ratings in, feature rows out, one function a view.

The stream's rows (``user_activity``) are computed by the same function for the history
(written to Parquet, the view's batch source) and for each replayed day (pushed), so the
offline and online values of a feature cannot be computed two ways. The batch views
(``user_profile``, ``movie_stats``) hold running totals as of the end of each day with
ratings: a day's row is published when the day is over (its event time is the next
midnight), as a nightly batch job would.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

WINDOW = timedelta(days=30)
ACTIVITY = ("ratings_30d", "mean_rating_30d")
PROFILE = ("ratings_total", "mean_rating", "rating_std")
MOVIE = ("movie_ratings", "movie_mean_rating")
_SHIFT = 40  # a user id and a time in seconds, packed into one sortable int64


def user_activity(ratings: pd.DataFrame, since: datetime | None = None) -> pd.DataFrame:
    """One row per user and second with ratings (at or after ``since``): the user's count
    and mean rating over the 30 days up to and including that second."""
    frame = ratings.sort_values(["user_id", "ts"], kind="stable")
    users = frame["user_id"].to_numpy(np.int64)
    epoch = pd.Timestamp(0, tz="UTC")
    seconds = ((frame["ts"] - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    if len(seconds) and seconds.min() < 0:
        raise ValueError("ratings before 1970 cannot be packed; move the log later")
    keys = (users << _SHIFT) | seconds
    window = int(WINDOW.total_seconds())
    upper = np.searchsorted(keys, keys, side="right")
    lower = np.searchsorted(keys, (users << _SHIFT) | np.maximum(seconds - window + 1, 0))
    sums = np.concatenate([[0.0], np.cumsum(frame["rating"].to_numpy(np.float64))])
    count = upper - lower
    out = pd.DataFrame(
        {
            "user_id": users,
            "event_timestamp": frame["ts"].reset_index(drop=True),
            "ratings_30d": count.astype(np.int64),
            "mean_rating_30d": (sums[upper] - sums[lower]) / count,
        }
    )
    out = out.drop_duplicates(["user_id", "event_timestamp"], keep="last")
    if since is not None:
        out = out[out["event_timestamp"] >= pd.Timestamp(since)]
    return out.reset_index(drop=True)


def _running(ratings: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per ``key`` and day with ratings: the count, mean and std of every rating so far,
    stamped at the day's end."""
    frame = ratings.sort_values([key, "ts"], kind="stable")
    rating = frame["rating"].to_numpy(np.float64)
    group = frame.groupby(key, sort=False)
    count = group.cumcount().to_numpy() + 1
    total = group["rating"].cumsum().to_numpy()
    squares = pd.Series(rating * rating, index=frame.index).groupby(frame[key]).cumsum()
    mean = total / count
    var = np.maximum(squares.to_numpy() / count - mean * mean, 0.0)
    out = pd.DataFrame(
        {
            key: frame[key].to_numpy(),
            "event_timestamp": (frame["ts"].dt.floor("D") + pd.Timedelta(days=1)).to_numpy(),
            "count": count.astype(np.int64),
            "mean": mean,
            "std": np.sqrt(var),
        }
    )
    return out.drop_duplicates([key, "event_timestamp"], keep="last").reset_index(drop=True)


def user_profile(ratings: pd.DataFrame) -> pd.DataFrame:
    """Each user's ratings so far, as of the end of every day they rated."""
    out = _running(ratings, "user_id")
    return out.rename(
        columns={"count": "ratings_total", "mean": "mean_rating", "std": "rating_std"}
    )


def movie_stats(ratings: pd.DataFrame) -> pd.DataFrame:
    """Each movie's ratings so far, as of the end of every day it was rated."""
    out = _running(ratings, "movie_id").drop(columns="std")
    return out.rename(columns={"count": "movie_ratings", "mean": "movie_mean_rating"})


def broken(day_rows: pd.DataFrame, movies: np.ndarray, stamp: datetime) -> pd.DataFrame:
    """``day_rows`` of ``movie_stats`` with what a broken upstream job writes: a null mean,
    a mean of 7.5 stars (out of 5) and one row twice. Used by the backfill demonstration."""
    others = movies[~np.isin(movies, day_rows["movie_id"].to_numpy())]
    picked = np.resize(others, 3)  # three movies without a row that day
    bad = pd.DataFrame(
        {
            "movie_id": picked.astype(np.int64),
            "event_timestamp": pd.Timestamp(stamp),
            "movie_ratings": np.array([3, 4, 5], dtype=np.int64),
            "movie_mean_rating": [np.nan, 7.5, 4.0],
        }
    )
    bad = pd.concat([bad, bad.iloc[[2]]], ignore_index=True)  # the same key twice
    return pd.concat([day_rows, bad], ignore_index=True)
