"""The predictor shared by the gradient-boosting flavors (``lightgbm``, ``xgboost``).

Classifiers answer ``prediction`` plus ``probability_<class>`` per class, like the
``sklearn`` flavor; regressors, rankers and native boosters answer what the booster
returns (1-D -> ``prediction``, 2-D -> ``output_<i>``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError
from modelyard.registry._flavors import Columns, to_output_columns


def loaded(library: str) -> bool:
    """True when ``library`` is imported; an object of its types cannot exist otherwise."""
    return library in sys.modules


def plain(value: Any) -> Any:
    """numpy scalars to Python scalars, so class labels serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value


def fitted_booster(model: Any, get: Callable[[], Any]) -> Any:
    """The booster inside a scikit-learn-API estimator, or a one-line error if unfitted."""
    try:
        return get()
    except Exception:  # NotFittedError, AttributeError, LightGBMError: all mean "not fitted"
        raise InvalidInputError(
            f"this {type(model).__name__} is not fitted; call fit() before logging it"
        ) from None


class BoostedPredictor:
    """Maps a booster's raw answer to columns; ``classes`` marks a classifier."""

    def __init__(
        self,
        run_frame: Callable[[pd.DataFrame], Any],
        run_array: Callable[[np.ndarray], Any],
        classes: Sequence[Any] | None,
        takes_arrays: bool = True,
    ) -> None:
        self._run_frame = run_frame
        self._run_array = run_array
        self._classes = None if classes is None else list(classes)
        self._labels = np.asarray(self._classes or [], dtype=object)
        self.takes_arrays = takes_arrays

    def predict(self, frame: pd.DataFrame) -> Columns:
        return self._columns(self._run_frame(frame), len(frame))

    def predict_array(self, x: np.ndarray) -> Columns:
        """Numeric inputs as one 2-D array, columns in signature order."""
        return self._columns(self._run_array(x), len(x))

    def _columns(self, raw: Any, rows: int) -> Columns:
        if self._classes is None:
            return to_output_columns(raw, rows)
        values = np.asarray(raw)
        if values.ndim == 1 and len(self._classes) > 2:
            # A "softmax" objective answers class indices, not probabilities.
            return {"prediction": self._labels[values.astype(np.int64)]}
        # Binary objectives answer P(second class); stack it the way predict_proba does.
        proba = np.column_stack([1.0 - values, values]) if values.ndim == 1 else values
        out: Columns = {"prediction": self._labels[proba.argmax(axis=1)]}
        for i, cls in enumerate(self._classes):
            out[f"probability_{cls}"] = proba[:, i]
        return out
