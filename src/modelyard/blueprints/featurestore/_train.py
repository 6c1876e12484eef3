"""Both models, trained on their point-in-time training sets and registered bound to their
feature services; the same models trained on the naive join, to measure the leak.

Each model is validated on time: it learns from the rows before ``valid_from`` and is
judged on those from it. The leak is reported three ways: the naive model's metric on
naive validation rows (what its offline evaluation claims), the same model on the
point-in-time validation rows (what it does when served, where features are read as of
the request), and the honest model's metric on those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard.blueprints.featurestore._definitions import DEFAULTS
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.registry import ModelVersion
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class Task:
    """One model: its name, feature service, features, label and metric."""

    model: str
    service: str
    features: list[str]
    label: str
    metric: str  # "rmse" (lower is better) or "roc_auc" (higher is better)

    @property
    def lower_is_better(self) -> bool:
        return self.metric == "rmse"


@dataclass(frozen=True)
class Leak:
    """What the naive join did to one model's evaluation."""

    rows: int
    future_rows: int  # rows that read at least one value written after their time
    per_view: dict[str, int]
    naive_offline: float  # the naive model, judged on naive validation rows
    naive_served: float  # the same model, judged on point-in-time rows (as served)
    honest: float  # the point-in-time model on point-in-time rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "future_rows": self.future_rows,
            "future_share": self.future_rows / self.rows if self.rows else 0.0,
            "per_view": self.per_view,
            "naive_offline": self.naive_offline,
            "naive_served": self.naive_served,
            "honest": self.honest,
        }


def _model(task: Task, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    params: dict[str, Any] = {"max_iter": 150, "learning_rate": 0.1, "random_state": seed}
    if task.metric == "rmse":
        return HistGradientBoostingRegressor(**params)
    return HistGradientBoostingClassifier(**params)


def _score(task: Task, model: Any, frame: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    x, y = frame[task.features], frame[task.label].to_numpy()
    if task.metric == "rmse":
        return float(np.sqrt(np.mean((model.predict(x) - y) ** 2)))
    return float(roc_auc_score(y, model.predict_proba(x)[:, 1]))


def split(
    task: Task, table: pd.DataFrame, valid_from: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    when = pd.to_datetime(table["event_timestamp"], utc=True)
    fit, valid = table[when < valid_from], table[when >= valid_from]
    for part, what in ((fit, "training"), (valid, "validation")):
        if len(part) < 50 or (task.metric == "roc_auc" and part[task.label].nunique() < 2):
            raise InvalidInputError(
                f"the {task.model} model's {what} window has {len(part)} rows, too few to "
                "learn or judge; change blueprint.holdout_days"
            )
    return fit, valid


def leak_of(
    task: Task,
    pit: pd.DataFrame,
    naive: pd.DataFrame,
    future_rows: int,
    per_view: dict[str, int],
    valid_from: datetime,
    seed: int,
) -> tuple[Leak, Any]:
    """The three metrics of the leak, and the honest model (fitted on ``pit``)."""
    pit_fit, pit_valid = split(task, pit, valid_from)
    naive_fit, naive_valid = split(task, naive, valid_from)
    honest = _model(task, seed).fit(pit_fit[task.features], pit_fit[task.label])
    leaky = _model(task, seed).fit(naive_fit[task.features], naive_fit[task.label])
    leak = Leak(
        rows=len(pit),
        future_rows=future_rows,
        per_view=per_view,
        naive_offline=_score(task, leaky, naive_valid),
        naive_served=_score(task, leaky, pit_valid),
        honest=_score(task, honest, pit_valid),
    )
    return leak, honest


def log(
    ws: Workspace,
    run: Any,
    task: Task,
    model: Any,
    pit: pd.DataFrame,
    leak: Leak,
    valid_from: datetime,
) -> Any:
    """Log the honest model in ``run`` with its metrics, the leak and its data sets."""
    fit, valid = split(task, pit, valid_from)
    run.log_params({"model": type(model).__name__, "features": ",".join(task.features)})
    run.log_dataset("train", fit, context="train")
    run.log_dataset("valid", valid, context="validation")
    run.log_metrics(
        {
            task.metric: leak.honest,
            f"naive_{task.metric}_offline": leak.naive_offline,
            f"naive_{task.metric}_served": leak.naive_served,
            "naive_future_rows": float(leak.future_rows),
        }
    )
    run.log_dict(leak.as_dict(), "leakage.json")
    x_fit = fit[task.features]
    return ws.registry.log_model(run, model, input_example=x_fit.head(20), reference_data=x_fit)


def register(ws: Workspace, task: Task, logged: Any, alias: str) -> ModelVersion:
    """Register the logged model bound to its feature service (defaults for missing values
    as in training) and point ``alias`` at it."""
    from modelyard.registry import FeatureBinding

    defaults = {name: DEFAULTS[name] for name in task.features}
    version = ws.registry.register(
        task.model,
        logged,
        description=f"gradient boosting on the feature service {task.service}",
        features=FeatureBinding(task.service, on_missing="default", defaults=defaults),
    )
    return ws.registry.set_alias(task.model, alias, version.version)
