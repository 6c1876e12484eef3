"""The blueprint's data: MovieLens' real ratings moved in time to end on ``anchor``, and the
user x item interaction matrix of what happened before a given time.

Every rating is an interaction (implicit feedback: the user chose to watch and rate the
movie, whatever the stars). The movies' genres are the groups of the exposure check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from modelyard.blueprints._movielens import movielens_ratings
from modelyard.errors import InvalidInputError


@dataclass(frozen=True)
class Interactions:
    """Who interacted with what before ``until``: row ``u`` of ``matrix`` is user
    ``users[u]``, column ``i`` item ``items[i]`` (both sorted ids)."""

    until: datetime
    users: np.ndarray[Any, np.dtype[np.int64]]
    items: np.ndarray[Any, np.dtype[np.int64]]
    matrix: Any  # scipy.sparse.csr_matrix, float32 ones
    rows: int  # ratings it counts

    def item_counts(self) -> np.ndarray[Any, Any]:
        """Interactions per item column (the popularity baseline's scores)."""
        return np.asarray(self.matrix.sum(axis=0)).ravel()


def load_log(anchor: datetime) -> pd.DataFrame:
    """The ratings, moved by whole days so the newest is on the day before ``anchor``:
    the nights the quickstart replays (up to the anchor's) each see the ratings of the
    day before them arrive."""
    ratings = movielens_ratings("recommendations")
    newest = ratings["ts"].max().to_pydatetime().astimezone(UTC)
    day_after = datetime(newest.year, newest.month, newest.day, tzinfo=UTC) + timedelta(days=1)
    ratings["ts"] = ratings["ts"] + pd.Timedelta(anchor - day_after)
    return ratings


def interactions(log: pd.DataFrame, until: datetime) -> Interactions:
    """The interaction matrix of the ratings before ``until`` (a user's repeat of an item
    counts once)."""
    import scipy.sparse as sp

    past = log[log["ts"] < until]
    if past.empty:
        raise InvalidInputError(
            f"no ratings before {until:%Y-%m-%d %H:%M}; the log begins "
            f"{log['ts'].min():%Y-%m-%d}: give a later night"
        )
    users, user_rows = np.unique(past["user_id"].to_numpy(), return_inverse=True)
    items, item_cols = np.unique(past["movie_id"].to_numpy(), return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(past), dtype=np.float32), (user_rows, item_cols)),
        shape=(len(users), len(items)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return Interactions(until, users.astype(np.int64), items.astype(np.int64), matrix, len(past))


def genres_of(log: pd.DataFrame, items: np.ndarray[Any, Any]) -> list[list[str]]:
    """Each item's genres (MovieLens' ``A|B|C``), in the order of ``items``."""
    first = log.drop_duplicates("movie_id").set_index("movie_id")["genres"]
    return [str(first.get(int(item), "(no genres listed)")).split("|") for item in items]
