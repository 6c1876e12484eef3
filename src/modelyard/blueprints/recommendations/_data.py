"""The blueprint's data: MovieLens' real ratings moved in time to end by ``anchor``, and the
user x item interaction matrix of what happened before a given time.

Every rating is an interaction (implicit feedback: the user chose to watch and rate the
movie, whatever the stars). The movies' genres are the groups of the exposure check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from modelyard.blueprints._movielens import movielens_ratings, weeks_to
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
    """The ratings, moved by whole weeks so the newest ends in the week before ``anchor``."""
    ratings = movielens_ratings("recommendations")
    _, shift = weeks_to(ratings, anchor)
    ratings["ts"] = ratings["ts"] + pd.Timedelta(shift)
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
