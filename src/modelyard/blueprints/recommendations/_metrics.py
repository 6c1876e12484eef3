"""Ranking metrics on a time holdout: precision@k, recall@k, NDCG@k and catalogue coverage.

A user is judged when they rated, inside the holdout, at least one item the training
data knows and they had not seen before it (a user new in the holdout has no factors to
judge; the read API serves them the popularity list). Relevance is binary: the user
rated the item. Coverage is the share of the catalogue that appears in anyone's list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from modelyard.blueprints.recommendations._data import Interactions
    from modelyard.blueprints.recommendations._topn import TopN


@dataclass(frozen=True)
class Ranking:
    """Metrics of one model's lists, averaged over the ``users`` judged."""

    precision: float
    recall: float
    ndcg: float
    coverage: float
    users: int
    k: int

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        k = self.k
        return {
            f"{prefix}precision_at_{k}": self.precision,
            f"{prefix}recall_at_{k}": self.recall,
            f"{prefix}ndcg_at_{k}": self.ndcg,
            f"{prefix}coverage": self.coverage,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def relevant(data: Interactions, holdout: pd.DataFrame) -> dict[int, set[int]]:
    """User row -> the item columns they rated in ``holdout`` and had not seen before."""
    user_rows = pd.Series(np.arange(len(data.users)), index=data.users)
    item_cols = pd.Series(np.arange(len(data.items)), index=data.items)
    known = holdout[
        holdout["user_id"].isin(user_rows.index) & holdout["movie_id"].isin(item_cols.index)
    ]
    found: dict[int, set[int]] = {}
    for user, movie in zip(known["user_id"].to_numpy(), known["movie_id"].to_numpy(), strict=True):
        row, col = int(user_rows[user]), int(item_cols[movie])
        if data.matrix[row, col] == 0:
            found.setdefault(row, set()).add(col)
    return found


def ranking(lists: TopN, truth: dict[int, set[int]], k: int, catalogue: int) -> Ranking:
    """The metrics of ``lists`` (every user's) against ``truth`` at ``k``."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision = recall = ndcg = 0.0
    for row, items in truth.items():
        top = lists.items[row, :k]
        hits = np.isin(top, list(items)).astype(float)
        precision += hits.sum() / k
        recall += hits.sum() / len(items)
        ideal = discounts[: min(k, len(items))].sum()
        ndcg += float(hits @ discounts[: len(hits)]) / ideal
    judged = max(len(truth), 1)
    shown = lists.items[:, :k]
    distinct = np.unique(shown[shown >= 0]).size
    return Ranking(
        precision / judged,
        recall / judged,
        ndcg / judged,
        distinct / max(catalogue, 1),
        len(truth),
        k,
    )
