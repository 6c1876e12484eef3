"""The recommender: implicit-feedback matrix factorisation (``implicit``'s ALS), and the
popularity baseline it must beat.

ALS learns a vector per user and per item whose dot product predicts "would interact";
a user's list is the items of highest score not seen yet (``_topn.py``). The popularity
baseline recommends every user the most-interacted items they have not seen. The fitted
factors are registered as a ``python`` flavor model (``Scorer``) that scores
(user, movie) pairs, so the server can also answer for any pair on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard.blueprints.recommendations._topn import TopN, top_n
from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from modelyard.blueprints.recommendations._config import RecommendationsSettings
    from modelyard.blueprints.recommendations._data import Interactions


@dataclass(frozen=True)
class Factors:
    """A fitted factorisation over ``data``'s users (rows) and items (columns)."""

    users: np.ndarray[Any, np.dtype[np.float32]]
    items: np.ndarray[Any, np.dtype[np.float32]]
    data: Interactions

    def recommend(self, k: int) -> TopN:
        """Every user's ``k`` best unseen items (column indices)."""
        return top_n(self.users, self.items, self.data.matrix, k)


def fit_als(data: Interactions, settings: RecommendationsSettings) -> Factors:
    """ALS on ``data``'s interactions, seeded; BLAS held to one thread (implicit runs its
    own threads, and warns when BLAS would fight them)."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ModuleNotFoundError:
        raise ConfigError(
            "the recommendations blueprint factorises with implicit, which is not "
            "installed; pip install 'modelyard[recommendations]'"
        ) from None
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=settings.factors,
            regularization=settings.regularization,
            alpha=settings.alpha,
            iterations=settings.iterations,
            random_state=settings.seed,
            calculate_training_loss=False,
        )
        model.fit(data.matrix, show_progress=False)
    return Factors(
        np.asarray(model.user_factors, dtype=np.float32),
        np.asarray(model.item_factors, dtype=np.float32),
        data,
    )


def popularity(data: Interactions, k: int) -> TopN:
    """Every user's ``k`` most-interacted items not seen yet: the baseline."""
    counts = data.item_counts().astype(np.float32)
    users = np.ones((data.matrix.shape[0], 1), dtype=np.float32)
    return top_n(users, counts[:, None], data.matrix, k)


def popular_list(data: Interactions, k: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The ``k`` most-interacted items (ids) and their share of interactions: the list an
    unknown user is served."""
    counts = data.item_counts()
    best = np.argsort(-counts, kind="stable")[:k]
    return data.items[best], (counts[best] / max(counts.sum(), 1)).astype(np.float32)


class Scorer:
    """The registered model: ``user_id``, ``movie_id`` -> ``score`` (the factors' dot
    product; 0 for a user or movie the factorisation has not seen)."""

    def __init__(self, factors: Factors) -> None:
        self.user_ids = factors.data.users
        self.item_ids = factors.data.items
        self.user_factors = factors.users
        self.item_factors = factors.items

    def __call__(self, frame: pd.DataFrame) -> dict[str, np.ndarray[Any, Any]]:
        users = np.asarray(frame["user_id"], dtype=np.int64)
        items = np.asarray(frame["movie_id"], dtype=np.int64)
        u = np.clip(np.searchsorted(self.user_ids, users), 0, len(self.user_ids) - 1)
        i = np.clip(np.searchsorted(self.item_ids, items), 0, len(self.item_ids) - 1)
        known = (self.user_ids[u] == users) & (self.item_ids[i] == items)
        scores = np.einsum("ij,ij->i", self.user_factors[u], self.item_factors[i])
        return {"score": np.where(known, scores, 0.0).astype(np.float64)}
