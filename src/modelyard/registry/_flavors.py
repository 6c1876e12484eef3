"""The flavor interface: how a kind of model is saved to a folder and loaded back.

A flavor turns a trained object into files and back into a ``Predictor`` that maps
an input DataFrame (columns in signature order) to an output DataFrame. Built-in
flavors register through ``register_flavor`` exactly as a user's would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError

Columns = dict[str, Any]
"""Output columns: name -> sequence (array or list), one value per input row."""


class Predictor(Protocol):
    def predict(self, frame: pd.DataFrame) -> Columns: ...


class ArrayPredictor(Predictor, Protocol):
    """A predictor that can also take numeric inputs as one 2-D array (faster)."""

    takes_arrays: bool

    def predict_array(self, x: Any) -> Columns: ...


class Flavor(Protocol):
    name: str

    def accepts(self, model: object) -> bool:
        """True when this flavor knows how to save ``model``."""
        ...

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        """Write ``model`` into ``folder``; return flavor settings needed to load it."""
        ...

    def load(self, folder: Path, settings: dict[str, Any]) -> Predictor: ...


FLAVORS: dict[str, Flavor] = {}


def loads_pickle(flavor: Flavor, settings: dict[str, Any]) -> bool:
    """Whether loading with ``flavor`` unpickles a file (runs code). A flavor says so with
    ``loads_pickle(settings)``; one that does not say is taken to (closed by default)."""
    check = getattr(flavor, "loads_pickle", None)
    return True if check is None else bool(check(settings))


def register_flavor(flavor: Flavor) -> Flavor:
    """Make ``flavor`` available by name and for auto-detection (later ones win)."""
    FLAVORS[flavor.name] = flavor
    return flavor


def get_flavor(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown flavor {name!r}; available: {', '.join(sorted(FLAVORS))}"
        ) from None


def detect_flavor(model: object) -> Flavor:
    for flavor in reversed(list(FLAVORS.values())):
        if flavor.accepts(model):
            return flavor
    raise InvalidInputError(
        f"no flavor can save a {type(model).__name__}; pass flavor= one of "
        f"{', '.join(sorted(FLAVORS))}, or wrap it in a function (the 'python' flavor)"
    )


def to_output_columns(result: Any, rows: int) -> Columns:
    """Normalise what a model returns (frame, dict of columns, array, list) to columns."""
    columns: Columns
    if isinstance(result, pd.DataFrame):
        columns = {str(c): result[c].to_numpy() for c in result.columns}
    elif isinstance(result, pd.Series):
        columns = {str(result.name or "prediction"): result.to_numpy()}
    elif isinstance(result, dict):
        columns = {str(k): v if hasattr(v, "__len__") else [v] for k, v in result.items()}
    else:
        arr = np.asarray(result)
        if arr.ndim == 2:
            columns = {f"output_{i}": arr[:, i] for i in range(arr.shape[1])}
        else:
            columns = {"prediction": arr.reshape(-1)}
    for name, values in columns.items():
        if len(values) != rows:
            raise InvalidInputError(
                f"the model returned {len(values)} values of {name!r} for {rows} input rows; "
                "a model must return one output row per input row"
            )
    return columns
