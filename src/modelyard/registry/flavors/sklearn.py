"""The ``sklearn`` flavor: estimators and pipelines, saved with joblib.

Classifiers answer ``prediction`` plus ``probability_<class>`` per class when they
can give probabilities; regressors and others answer ``prediction``. A model logged
with ``onnx=True`` loads into onnxruntime instead (``settings["runtime"]``; see onnx.py).

A model fitted on a DataFrame checks column names on every call, and pandas plus
that check cost ~0.7 ms per single-row call against ~0.2 ms for a NumPy array. For
numeric inputs the predictor therefore keeps a copy of the model without the stored
feature names and feeds it arrays, but only after a probe at load time shows that
both paths give the same answer (a ColumnTransformer, which selects by name, never
takes the array path).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError
from modelyard.registry._flavors import Predictor

FILE = "model.joblib"


def _steps(model: Any) -> list[Any]:
    return [step for _, step in model.steps] if hasattr(model, "steps") else [model]


def _array_twin(model: Any) -> Any | None:
    """A copy of ``model`` that takes plain arrays, or None when that is not safe."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return model
    steps = _steps(model)
    if any(hasattr(s, "transformers") or hasattr(s, "steps") for s in steps):
        return None
    twin = copy.deepcopy(model)
    for step in _steps(twin):
        if "feature_names_in_" in vars(step):
            delattr(step, "feature_names_in_")
    probe = pd.DataFrame(np.zeros((2, len(names))), columns=list(names))
    probe.iloc[1] = 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            same = _outputs(model, probe) == _outputs(twin, probe.to_numpy())
    except Exception:  # any failure just means: keep the DataFrame path
        return None
    return twin if same else None


def _outputs(model: Any, x: Any) -> str:
    method = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    return repr(np.asarray(method(x)).round(12).tolist())


class SklearnPredictor:
    def __init__(self, model: Any) -> None:
        self.model = model
        self._wants_frame = hasattr(model, "feature_names_in_")
        self._twin = _array_twin(model)
        classes = getattr(model, "classes_", None)
        self._proba = classes is not None and hasattr(model, "predict_proba")
        self._classes = [] if classes is None else [_plain(c) for c in classes]
        self._labels = np.asarray(self._classes, dtype=object)
        self._argmax_ok = _argmax_is_predict(_steps(model)[-1])

    @property
    def takes_arrays(self) -> bool:
        return self._twin is not None

    def predict(self, frame: pd.DataFrame) -> dict[str, Any]:
        return self._run(self.model, frame if self._wants_frame else frame.to_numpy())

    def predict_array(self, x: np.ndarray) -> dict[str, Any]:
        """Numeric inputs as one 2-D array, columns in signature order."""
        if self._twin is None:
            raise TypeError("this model needs a DataFrame; call predict()")
        return self._run(self._twin, x)

    def _run(self, model: Any, x: Any) -> dict[str, Any]:
        if not self._proba:
            return {"prediction": np.asarray(model.predict(x))}
        proba = model.predict_proba(x)
        decide = getattr(model, "predict_from_proba", None)
        if self._argmax_ok:
            labels = self._labels[proba.argmax(axis=1)]
        elif decide is not None:  # the estimator's own rule, without a second pass
            labels = np.asarray(decide(proba), dtype=object)
        else:
            labels = np.asarray(model.predict(x), dtype=object)
        out: dict[str, Any] = {"prediction": labels}
        for i, cls in enumerate(self._classes):
            out[f"probability_{cls}"] = proba[:, i]
        return out


def _argmax_is_predict(estimator: Any) -> bool:
    """Whether argmax over ``predict_proba`` is what ``predict`` answers, which saves a
    second pass (an estimator that decides otherwise may offer ``predict_from_proba(proba)``
    to save it too). True for scikit-learn's linear models, trees and ensembles, LightGBM and
    XGBoost; not for SVC (its Platt probabilities can disagree), scikit-learn's threshold
    classifiers (``FixedThresholdClassifier``, ``TunedThresholdClassifierCV``) or a class
    of one's own, whose ``predict`` may decide otherwise (at a tuned threshold, say)."""
    module = type(estimator).__module__
    if module.startswith(("sklearn.svm", "sklearn.model_selection")):
        return False
    return module.split(".")[0] in ("sklearn", "lightgbm", "xgboost")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class SklearnFlavor:
    name = "sklearn"

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return settings.get("runtime") != "onnxruntime"  # joblib unless its ONNX copy serves

    def accepts(self, model: object) -> bool:
        try:
            from sklearn.base import BaseEstimator
        except ImportError:
            return False
        return isinstance(model, BaseEstimator)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        import joblib  # type: ignore[import-untyped]
        import sklearn

        joblib.dump(model, folder / FILE)
        return {"file": FILE, "sklearn_version": sklearn.__version__}

    def convert_onnx(
        self, model: object, example: pd.DataFrame, folder: Path, mode: bool | str
    ) -> dict[str, Any]:
        """Keep an exact ONNX copy (``log_model(..., onnx=True)``); see onnx.py."""
        from modelyard.registry.flavors import onnx

        if mode == "int8":
            raise InvalidInputError(
                "onnx='int8' quantises text models only; log a scikit-learn model with "
                "onnx=True (exact) or without onnx="
            )
        return onnx.convert_checked(model, example, folder)

    def load(self, folder: Path, settings: dict[str, Any]) -> Predictor:
        if settings.get("runtime") == "onnxruntime":  # kept by log_model(..., onnx=True)
            from modelyard.registry.flavors import onnx

            return onnx.load(folder, settings)
        import joblib

        return SklearnPredictor(joblib.load(folder / settings.get("file", FILE)))
