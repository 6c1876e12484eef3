"""The ``mlflow`` flavor: a model that MLflow logged (an ``MLmodel`` folder), registered
through the team server or copied by ``modelyard import mlflow``.

A scikit-learn model (MLmodel's ``sklearn`` flavor, pickled or cloudpickled) loads without
MLflow installed and answers like modelyard's own ``sklearn`` flavor (``prediction`` and
``probability_<class>``); a skops file goes through MLflow, which knows the types it
trusts. Any other MLflow model loads through ``mlflow.pyfunc`` when the ``mlflow`` package
is installed; without it the error says what to install. Both paths unpickle:
``--require-safe-formats`` refuses them. Never chosen by auto-detection: modelyard logs
its own models with their own flavors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import ConfigError, InvalidInputError
from modelyard.registry._flavors import Predictor, to_output_columns

MLMODEL = "MLmodel"


def _mlmodel(folder: Path) -> dict[str, Any]:
    import yaml

    path = folder / MLMODEL
    if not path.exists():
        raise InvalidInputError(
            f"{folder} has no {MLMODEL} file: it is not a model MLflow logged; register the "
            "MLflow model's own folder (runs:/RUN_ID/model or models:/MODEL_ID)"
        )
    found = yaml.safe_load(path.read_text())
    return found if isinstance(found, dict) else {}


class PyfuncPredictor:
    """An MLflow pyfunc model: a DataFrame in, its answer as output columns."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, frame: pd.DataFrame) -> dict[str, Any]:
        answer = self.model.predict(frame)
        if isinstance(answer, list):
            answer = np.asarray(answer)
        return to_output_columns(answer, len(frame))


class MlflowFlavor:
    name = "mlflow"

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return True

    def accepts(self, model: object) -> bool:
        return False

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        raise InvalidInputError(
            "the 'mlflow' flavor holds models MLflow logged; log this model with modelyard's "
            "own flavors (detected from the object), or with MLflow through the team server"
        )

    def load(self, folder: Path, settings: dict[str, Any]) -> Predictor:
        flavors = _mlmodel(folder).get("flavors") or {}
        sk = flavors.get("sklearn")
        pickled = isinstance(sk, dict) and sk.get("serialization_format", "cloudpickle") in (
            "pickle",
            "cloudpickle",
        )
        if isinstance(sk, dict) and sk.get("pickled_model") and pickled:
            import cloudpickle

            from modelyard.registry.flavors.sklearn import SklearnPredictor

            with open(folder / sk["pickled_model"], "rb") as fh:
                return SklearnPredictor(cloudpickle.load(fh))  # reads pickle and cloudpickle
        try:
            import mlflow.pyfunc
        except ImportError:
            raise ConfigError(
                f"this MLflow model ({', '.join(sorted(flavors)) or 'no flavors'}) loads "
                "through MLflow: pip install 'modelyard[mlflow]' and its own libraries"
            ) from None
        return PyfuncPredictor(mlflow.pyfunc.load_model(str(folder)))
