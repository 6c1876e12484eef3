"""The churn blueprint's cost-tuned threshold: the exact expected-cost curve over every
distinct score, checked against a brute-force count, and its minimum."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.blueprints.churn._threshold import cost_curve
from modelyard.errors import InvalidInputError


def brute(labels: np.ndarray, scores: np.ndarray, t: float, missed: float, offer: float) -> float:
    offered = scores >= t
    return float(missed * (labels & ~offered).sum() + offer * offered.sum())


def test_the_curve_is_the_cost_of_each_threshold_and_its_minimum_is_chosen() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.25
    scores = np.round(np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1), 2)  # with ties
    curve = cost_curve(labels, scores, missed=500.0, offer=50.0)
    for t, cost in zip(curve.thresholds, curve.costs, strict=True):
        assert cost == pytest.approx(brute(labels, scores, t, 500.0, 50.0))
    every = np.unique(np.r_[scores, 2.0])
    assert curve.best_cost == pytest.approx(min(brute(labels, scores, t, 500, 50) for t in every))
    assert curve.offer_all == brute(labels, scores, 0.0, 500, 50) == 50 * 500
    assert curve.offer_none == 500 * labels.sum()
    assert curve.best_cost < min(curve.offer_all, curve.offer_none)
    # Sampled at each whole percent (what the dashboard draws): the cost of that threshold.
    sampled = curve.at_percent()
    assert len(sampled) == 101
    for percent in (0, 17, 50, 83, 100):
        t = percent / 100
        assert sampled[percent] == pytest.approx(brute(labels, scores, t, 500.0, 50.0))


def test_cheap_offers_lower_the_threshold_and_dear_ones_raise_it() -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(2000) < 0.3
    scores = np.clip(labels * 0.35 + rng.random(2000) * 0.65, 0, 1)
    cheap = cost_curve(labels, scores, missed=500, offer=10).best
    dear = cost_curve(labels, scores, missed=500, offer=200).best
    assert cheap < dear
    free = cost_curve(labels, scores, missed=500, offer=0)
    assert free.best_cost == 0 and free.best == scores[labels].min()  # every churner, no more


def test_bad_costs_and_shapes_are_one_line_errors() -> None:
    with pytest.raises(InvalidInputError, match="must cost more than 0"):
        cost_curve(np.array([1, 0]), np.array([0.2, 0.1]), missed=0, offer=1)
    with pytest.raises(InvalidInputError, match="equally long"):
        cost_curve(np.array([1, 0]), np.array([0.2]), missed=1, offer=1)
