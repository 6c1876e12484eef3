"""The ``lightgbm`` flavor: ``LGBMClassifier``/``LGBMRegressor``/``LGBMRanker`` and ``Booster``.

Saved in LightGBM's own text model format (not pickle), so any LightGBM 4 reads it,
plus the estimator kind and, for classifiers, the class labels. Loads as a plain
``lightgbm.Booster``; a classifier answers ``prediction`` and ``probability_<class>``
exactly as ``predict``/``predict_proba`` would. A model with pandas categorical
features needs its DataFrame, so it never takes the array path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from modelyard.registry.flavors._boosted import BoostedPredictor, fitted_booster, loaded, plain

FILE = "model.txt"


class LightGBMFlavor:
    name = "lightgbm"

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return False  # LightGBM's own text format

    def accepts(self, model: object) -> bool:
        if not loaded("lightgbm"):
            return False
        import lightgbm as lgb

        return isinstance(model, lgb.LGBMModel | lgb.Booster)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        import lightgbm as lgb

        if isinstance(model, lgb.Booster):
            booster, kind = model, "booster"
        else:
            estimator = cast(lgb.LGBMModel, model)
            booster = fitted_booster(model, lambda: estimator.booster_)
            kind = _kind(model)
        # Without num_iteration, the best iteration of early stopping is what gets saved.
        booster.save_model(folder / FILE)
        settings: dict[str, Any] = {"file": FILE, "kind": kind, "lightgbm_version": lgb.__version__}
        if isinstance(model, lgb.LGBMClassifier):
            settings["classes"] = [plain(c) for c in model.classes_]
        return settings

    def load(self, folder: Path, settings: dict[str, Any]) -> BoostedPredictor:
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(folder / settings.get("file", FILE)))

        def run_frame(frame: pd.DataFrame) -> Any:
            return booster.predict(frame)

        def run_array(x: np.ndarray) -> Any:
            return booster.predict(x)

        return BoostedPredictor(
            run_frame,
            run_array,
            settings.get("classes"),
            takes_arrays=not booster.pandas_categorical,
        )


def _kind(model: Any) -> str:
    import lightgbm as lgb

    if isinstance(model, lgb.LGBMClassifier):
        return "classifier"
    if isinstance(model, lgb.LGBMRanker):
        return "ranker"
    return "regressor"
