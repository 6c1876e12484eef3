"""A model version loaded for prediction: validates input against its signature."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from modelyard.contracts import RecordValidator, as_frame, validate_frame
from modelyard.errors import InvalidInputError
from modelyard.registry._flavors import ArrayPredictor, Columns, Predictor
from modelyard.registry._versions import ModelVersion

_NUMERIC = frozenset({"int64", "float64", "bool"})


@dataclass
class LoadedModel:
    version: ModelVersion
    predictor: Predictor
    validator: RecordValidator
    _array_path: bool = field(init=False, default=False)
    _names: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        inputs = self.version.signature.inputs
        self._names = tuple(inputs.names)
        self._array_path = bool(getattr(self.predictor, "takes_arrays", False)) and all(
            f.dtype in _NUMERIC and not f.nullable for f in inputs.fields
        )

    @property
    def name(self) -> str:
        return self.version.name

    @property
    def number(self) -> int:
        return self.version.version

    def predict(self, data: Any, *, validate: bool = True) -> pd.DataFrame:
        """Predict for a DataFrame, a record (dict), a list of records or a 2-D array."""
        names = self.version.signature.inputs.names
        if not names:
            raise InvalidInputError(
                f"model {self.version.ref} has no input columns in its signature (an MLflow "
                "model logged without a column signature or input example); log it again "
                "with one, or call its .predictor.predict(frame) directly"
            )
        if isinstance(data, dict) or (
            isinstance(data, list) and data and isinstance(data[0], dict)
        ):
            if validate:
                return pd.DataFrame(self.predict_columns(self.validator.validate_python(data)))
            return pd.DataFrame(self.predictor.predict(pd.DataFrame(data)[names]))
        frame = as_frame(data, names=names)
        frame = validate_frame(self.version.signature.inputs, frame) if validate else frame[names]
        return pd.DataFrame(self.predictor.predict(frame))

    def predict_columns(self, columns: dict[str, list[Any]]) -> Columns:
        """Predict for validated input columns (name -> values).

        Columns are taken by name in this version's signature order: a server may hand a
        canary the champion's columns, in the champion's order and with fields this
        version does not read.
        """
        if tuple(columns) != self._names:
            columns = {name: columns[name] for name in self._names}
        if self._array_path:
            x = np.array(list(columns.values()), dtype=np.float64).T
            return cast(ArrayPredictor, self.predictor).predict_array(x)
        return self.predictor.predict(pd.DataFrame(columns))
