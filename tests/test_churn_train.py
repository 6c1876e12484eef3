"""The churn blueprint's weekly training on simulated days of real customers: boosted
model against a logistic-regression baseline, validated on a later window, registered
with the cost-tuned threshold and its lineage to the feature service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelyard
from modelyard.blueprints.churn import CustomerColumns, churn_days, load_customers, simulate_day
from modelyard.blueprints.churn._daily import daily_features, write_day
from modelyard.blueprints.churn._features import definitions, label_rows, training_set
from modelyard.blueprints.churn._train import expected_calibration_error, train
from modelyard.errors import InvalidInputError

START = datetime(2026, 1, 1, tzinfo=UTC)
SEED = 11


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ...]]:
    root = tmp_path_factory.mktemp("churn")
    few = load_customers(CustomerColumns()).sample(1500, random_state=3).reset_index(drop=True)
    leaving = churn_days(few, SEED)
    for day in range(50):
        events = simulate_day(few, day, start=START, seed=SEED, leaving=leaving)
        write_day(root / "events", START, day, events)
        write_day(root / "features", START, day, daily_features(root / "events", few, START, day))
    ws = modelyard.Workspace.init(root / "ws", environ={})
    ws.features.apply(definitions(root / "features"))
    table = training_set(ws, label_rows(few, leaving, START, [14, 21, 28, 35, 42, 49]))
    result = train(
        ws, table, valid_from=pd.Timestamp(START) + pd.Timedelta(days=42), missed=500, offer=50
    )
    yield ws, result, root
    ws.close()


def test_the_boosted_model_learns_churn_and_is_judged_against_a_baseline(trained: tuple) -> None:
    _, result, _ = trained
    assert result.metrics["roc_auc"] > 0.75 and result.metrics["pr_auc"] > 0.4
    assert result.baseline["roc_auc"] > 0.6  # the baseline is a real model too
    assert set(result.metrics) == {"pr_auc", "roc_auc", "f1_churn", "brier", "ece"}
    assert 0 <= result.metrics["ece"] <= 1 and 0 < result.metrics["brier"] < 0.25


def test_the_version_carries_its_threshold_costs_and_feature_service(trained: tuple) -> None:
    ws, result, root = trained
    version = ws.registry.get("churn/1")
    assert float(version.tags["threshold"]) == pytest.approx(result.curve.best, rel=1e-5)
    assert version.tags["cost_missed"] == "500" and version.tags["cost_offer"] == "50"
    assert version.features is not None and version.features.service == "churn_v1"
    assert result.curve.best_cost <= min(result.curve.offer_all, result.curve.offer_none)
    run = ws.runs.get(version.run_id)
    assert {"pr_auc", "baseline_pr_auc", "expected_cost"} <= set(run.metrics)


def test_a_validation_window_without_churners_is_refused(trained: tuple) -> None:
    ws, _, _ = trained
    table = pd.DataFrame({"event_timestamp": [pd.Timestamp(START)] * 4, "churned": [0, 1, 0, 0]})
    with pytest.raises(InvalidInputError, match="validation window has 0 rows"):
        train(ws, table, valid_from=pd.Timestamp(START) + pd.Timedelta(days=1), missed=1, offer=1)


def test_calibration_error_is_zero_for_calibrated_scores() -> None:
    import numpy as np

    scores = np.repeat([0.1, 0.5, 0.9], 100)
    labels = np.r_[np.arange(100) < 10, np.arange(100) < 50, np.arange(100) < 90].astype(int)
    assert expected_calibration_error(labels, scores) == pytest.approx(0.0)
    assert expected_calibration_error(1 - labels, scores) == pytest.approx(0.8 / 3 * 2)


@pytest.fixture(params=["sqlite", "postgresql"])
def scores_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scores.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_a_days_scores_are_stored_with_lineage_and_a_rerun_replaces_them(
    trained: tuple, scores_url: str
) -> None:
    from modelyard.blueprints.churn._daily import FEATURES
    from modelyard.blueprints.churn._scores import read_scores, scores_frame, write_scores

    ws, result, root = trained
    ws.registry.set_alias("churn", "production", result.version.version)
    version = ws.registry.get("churn@production")
    model = ws.registry.load("churn@production")
    features = pd.read_parquet(root / "features" / "2026-02-19.parquet")  # day 49

    def scored(rows: pd.DataFrame) -> pd.DataFrame:  # what serving.score writes
        outputs = model.predict(rows[list(FEATURES)]).reset_index(drop=True)
        return pd.concat([rows[["customer_id"]].reset_index(drop=True), outputs], axis=1)

    first = scores_frame(ws, version, scored(features), "2026-02-19", "sha256:" + "0" * 64)
    assert write_scores(scores_url, first) == len(features)
    fingerprint = "sha256:" + "1" * 64
    again = scores_frame(ws, version, scored(features.head(100)), "2026-02-19", fingerprint)
    write_scores(scores_url, again)  # the day run again, smaller
    stored = read_scores(scores_url, "2026-02-19")
    assert len(stored) == 100  # replaced, not added to
    row = stored.iloc[0]
    assert (row["model"], row["version"]) == ("churn", result.version.version)
    assert row["feature_service"] == "churn_v1" and row["feature_service_version"] == 1
    assert row["run_id"] == result.version.run_id
    assert row["input_fingerprint"] == fingerprint
    threshold = float(result.version.tags["threshold"])
    assert (stored["offer"] == (stored["score"] >= threshold)).all()
    assert stored["score"].between(0, 1).all() and stored["offer"].any()


def test_the_served_model_fits_its_boosted_model_and_decides_at_its_threshold() -> None:
    from lightgbm import LGBMClassifier
    from sklearn.datasets import load_breast_cancer

    from modelyard.blueprints.churn import OfferModel

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = OfferModel(LGBMClassifier(n_estimators=20, verbose=-1), threshold=0.9).fit(x, y)
    proba = model.predict_proba(x)
    assert (model.predict(x) == (proba[:, 1] >= 0.9)).all()
    assert (model.predict(x) != proba.argmax(axis=1)).any()  # not the 0.5 cut
    assert (model.predict_from_proba(proba) == model.predict(x)).all()
