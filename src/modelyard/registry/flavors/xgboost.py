"""The ``xgboost`` flavor: ``XGBClassifier``/``XGBRegressor``/``XGBRanker`` and ``Booster``.

Saved in XGBoost's own JSON model format (not pickle); an estimator's file also holds
its scikit-learn attributes, so ``XGBClassifier().load_model(path)`` reads it too.
Loads as a plain ``xgboost.Booster`` and predicts with ``inplace_predict`` (no
DMatrix), using the best iteration of early stopping as ``predict`` does. A classifier
answers ``prediction`` and ``probability_<class>`` like the ``sklearn`` flavor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from modelyard.registry.flavors._boosted import BoostedPredictor, fitted_booster, loaded, plain

FILE = "model.json"


class XGBoostFlavor:
    name = "xgboost"

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return False  # XGBoost's own JSON/UBJSON format

    def accepts(self, model: object) -> bool:
        if not loaded("xgboost"):
            return False
        import xgboost as xgb

        return isinstance(model, xgb.XGBModel | xgb.Booster)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        import xgboost as xgb

        settings: dict[str, Any] = {"file": FILE, "xgboost_version": xgb.__version__}
        if isinstance(model, xgb.Booster):
            model.save_model(folder / FILE)
            return {**settings, "kind": "booster"}
        estimator = cast(xgb.XGBModel, model)
        booster = fitted_booster(estimator, estimator.get_booster)
        estimator.save_model(folder / FILE)
        settings["kind"] = _kind(estimator)
        if isinstance(estimator, xgb.XGBClassifier):
            settings["classes"] = [plain(c) for c in estimator.classes_]
        if booster.attr("best_iteration") is not None and estimator.booster != "gblinear":
            settings["iterations"] = int(cast(str, booster.attr("best_iteration"))) + 1
        missing = estimator.missing
        if missing is not None and not math.isnan(missing):
            settings["missing"] = float(missing)
        return settings

    def load(self, folder: Path, settings: dict[str, Any]) -> BoostedPredictor:
        import xgboost as xgb

        booster = xgb.Booster(model_file=folder / settings.get("file", FILE))
        # (0, 0) means every tree; an estimator trained with early stopping stops at its best.
        iterations = (0, int(settings.get("iterations", 0)))
        missing = float(settings.get("missing", np.nan))

        def run_frame(frame: pd.DataFrame) -> Any:
            data = frame if booster.feature_names is not None else frame.to_numpy()
            return booster.inplace_predict(data, iteration_range=iterations, missing=missing)

        def run_array(x: np.ndarray) -> Any:
            return booster.inplace_predict(x, iteration_range=iterations, missing=missing)

        return BoostedPredictor(run_frame, run_array, settings.get("classes"))


def _kind(model: Any) -> str:
    import xgboost as xgb

    if isinstance(model, xgb.XGBClassifier):
        return "classifier"
    if isinstance(model, xgb.XGBRanker):
        return "ranker"
    return "regressor"
