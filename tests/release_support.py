"""Helpers for the release tests: real models on scikit-learn's bundled data sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import modelyard
from modelyard.tracking import log_holdout

NAME = "cancer"


@dataclass(frozen=True)
class Split:
    train_x: pd.DataFrame
    train_y: pd.Series
    holdout: pd.DataFrame  # features and the "target" column


def breast_cancer() -> Split:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    train_x, hold_x, train_y, hold_y = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    return Split(train_x, train_y, hold_x.assign(target=hold_y))


def good_model() -> Any:
    """Logistic regression on scaled features: ROC AUC near 0.99 on the holdout."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def weak_model() -> Any:
    """A decision stump: clearly worse than the logistic regression on every metric."""
    return DecisionTreeClassifier(max_depth=1, random_state=0)


def register(
    ws: modelyard.Workspace,
    model: Any,
    split: Split,
    *,
    alias: str | None = None,
    columns: list[str] | None = None,
    keep_holdout: bool = True,
) -> int:
    """Fit ``model`` on the training rows, register it (with the holdout kept in its run
    unless told otherwise), point ``alias`` at it; return the version number."""
    x = split.train_x if columns is None else split.train_x[columns]
    with ws.start_run("train") as run:
        fitted = model.fit(x, split.train_y)
        logged = ws.registry.log_model(run, fitted, input_example=x.head(20))
        if keep_holdout:
            log_holdout(run, split.holdout, target="target")
    version = ws.registry.register(NAME, logged).version
    if alias is not None:
        ws.registry.set_alias(NAME, alias, version)
    return version


def with_config(ws: modelyard.Workspace, toml: str = "") -> modelyard.Workspace:
    """Write modelyard.toml holding the workspace's metadata URL and ``toml``; reopen it."""
    url = ws.config["metadata.url"]
    (ws.root / "modelyard.toml").write_text(f'[metadata]\nurl = "{url}"\n\n{toml}')
    return modelyard.Workspace(ws.root)


def production(ws: modelyard.Workspace) -> int:
    return ws.registry.get(f"{NAME}@production").version
