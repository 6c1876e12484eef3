"""The decision threshold that costs least: a missed churner costs ``missed`` (the
revenue that walks away), a retention offer costs ``offer`` (whoever gets it, churner or
not), and an offered churner is assumed to stay. For each threshold t, customers scored
at t or above get an offer:

    cost(t) = missed * (churners scored below t) + offer * (customers scored at t or above)

The curve is computed exactly over every distinct score (sorting once), on the
validation window, and its minimum is the threshold stored with the model version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelyard.errors import InvalidInputError


@dataclass(frozen=True)
class CostCurve:
    thresholds: np.ndarray  # ascending; an offer goes to scores >= threshold
    costs: np.ndarray  # total cost at each threshold
    best: float  # the threshold of least cost (the highest one among ties)
    best_cost: float
    offer_all: float  # the cost of an offer to everyone (threshold 0)
    offer_none: float  # the cost of no offers at all

    def per_customer(self, n: int) -> float:
        return self.best_cost / n

    def at_percent(self) -> np.ndarray:
        """The cost at thresholds 0%, 1%, ... 100% (where a chart of the curve samples it):
        at each, the cost of the lowest curve threshold at or above it."""
        wanted = np.arange(101) / 100
        index = np.minimum(np.searchsorted(self.thresholds, wanted), len(self.costs) - 1)
        found: np.ndarray = self.costs[index]
        return found


def cost_curve(labels: np.ndarray, scores: np.ndarray, *, missed: float, offer: float) -> CostCurve:
    """The expected cost of every threshold over ``scores`` (1 in ``labels``: churned)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1 or len(y) == 0:
        raise InvalidInputError("labels and scores must be two equally long, non-empty lists")
    if missed <= 0 or offer < 0:
        raise InvalidInputError(
            f"costs: a missed churner must cost more than 0 (got {missed}) and an offer "
            f"0 or more (got {offer})"
        )
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    offered = np.arange(1, len(s) + 1)  # offers if the threshold is s_desc[i]
    caught = np.cumsum(y_desc)
    last_of_tie = np.r_[s_desc[1:] != s_desc[:-1], True]  # a threshold takes every tie
    thresholds = s_desc[last_of_tie][::-1]
    costs = (missed * (y.sum() - caught) + offer * offered)[last_of_tie][::-1]
    none_cost = float(missed * y.sum())
    thresholds = np.r_[thresholds, np.nextafter(s.max(), np.inf)]  # above every score
    costs = np.r_[costs, none_cost]
    low = float(costs.min())
    best = float(thresholds[np.flatnonzero(costs == low)[-1]])
    return CostCurve(thresholds, costs, best, low, float(costs[0]), none_cost)
