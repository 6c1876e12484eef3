"""Schema and Field: the one contract that travels from data to serving to monitoring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from modelyard.errors import InvalidInputError

DType = Literal["int64", "float64", "bool", "string", "datetime"]
DTYPES: tuple[str, ...] = ("int64", "float64", "bool", "string", "datetime")


class Field(BaseModel):
    """One named column: dtype, nullability, allowed range or categories, PII tag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dtype: DType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str | int | bool, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    # Personal data: True or "hash" keeps a keyed hash in every log, "drop" keeps nothing.
    pii: bool | Literal["hash", "drop"] = False
    description: str = ""
    # NaN and ±Infinity are refused (422 at the server) unless a float64 field allows them.
    allow_non_finite: bool = False

    @model_validator(mode="after")
    def _check(self) -> Field:
        if (self.min is not None or self.max is not None) and self.dtype not in (
            "int64",
            "float64",
        ):
            raise ValueError(f"field '{self.name}': min/max only apply to int64 and float64")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"field '{self.name}': min {self.min} is greater than max {self.max}")
        lengths = (self.min_length, self.max_length)
        if any(n is not None for n in lengths) and self.dtype != "string":
            raise ValueError(f"field '{self.name}': min_length/max_length only apply to string")
        if any(n is not None and n < 0 for n in lengths):
            raise ValueError(f"field '{self.name}': min_length/max_length must not be negative")
        if None not in lengths and self.min_length > self.max_length:  # type: ignore[operator]
            raise ValueError(
                f"field '{self.name}': min_length {self.min_length} is greater than "
                f"max_length {self.max_length}"
            )
        if self.allow_non_finite and self.dtype != "float64":
            raise ValueError(f"field '{self.name}': allow_non_finite only applies to float64")
        if self.categories is not None and len(self.categories) == 0:
            raise ValueError(f"field '{self.name}': categories must not be empty")
        return self


class Schema(BaseModel):
    """An ordered list of fields with unique names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: tuple[Field, ...]

    @model_validator(mode="after")
    def _unique(self) -> Schema:
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"field '{f.name}' is declared twice")
            seen.add(f.name)
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.fields)

    @classmethod
    def of(cls, *fields: Field) -> Schema:
        return cls(fields=fields)

    @classmethod
    def infer(cls, data: Any, *, categories: Iterable[str] = ()) -> Schema:
        """Infer a schema from a DataFrame, a 2-D array, a dict of columns or a list of records.

        Columns named in ``categories`` get their observed values as allowed categories.
        """
        frame = as_frame(data)
        wanted = set(categories)
        return cls(fields=tuple(_infer_field(str(c), frame[c], str(c) in wanted) for c in frame))

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)


def as_frame(data: Any, *, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Turn the tabular inputs users pass into a DataFrame (arrays get x0, x1, … columns)."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise InvalidInputError(
                f"expected a 2-D array of rows, got {data.ndim} dimensions; reshape it"
            )
        cols = list(names) if names is not None else [f"x{i}" for i in range(data.shape[1])]
        return pd.DataFrame(data, columns=cols)
    if isinstance(data, Mapping):
        values = list(data.values())
        if values and all(isinstance(v, list | tuple | np.ndarray | pd.Series) for v in values):
            return pd.DataFrame(dict(data))
        return pd.DataFrame([dict(data)])
    if isinstance(data, list | tuple):
        return pd.DataFrame(list(data))
    raise InvalidInputError(
        f"cannot read tabular data from {type(data).__name__}; "
        "pass a pandas DataFrame, a 2-D numpy array, a dict of columns or a list of records"
    )


def _infer_field(name: str, col: pd.Series, as_category: bool) -> Field:
    nullable = bool(col.isna().any())
    kind = col.dtype.kind
    cats: tuple[Any, ...] | None = None
    dtype: DType
    if isinstance(col.dtype, pd.CategoricalDtype):
        # Integer and boolean categories keep their type, so the frame they came from
        # (and JSON records with the same values) validate against the inferred field.
        levels = col.cat.categories
        if levels.dtype.kind in "iub":
            dtype = "bool" if levels.dtype.kind == "b" else "int64"
            cats = tuple(_plain(c) for c in levels)
        else:
            dtype = "string"
            cats = tuple(str(c) for c in levels)
    elif kind == "b" or str(col.dtype) == "boolean":
        dtype = "bool"
    elif kind in "iu" or str(col.dtype).startswith(("Int", "UInt")):
        dtype = "int64"
    elif kind == "f":
        dtype = "float64"
    elif kind == "M":
        dtype = "datetime"
    else:
        inferred = pd.api.types.infer_dtype(col, skipna=True)
        dtype = {
            "integer": "int64",
            "floating": "float64",
            "mixed-integer-float": "float64",
            "boolean": "bool",
            "datetime": "datetime",
            "datetime64": "datetime",
        }.get(inferred, "string")  # type: ignore[assignment]
    if as_category and cats is None:
        cats = tuple(sorted({_plain(v) for v in col.dropna()}, key=str))
    return Field(name=name, dtype=dtype, nullable=nullable, categories=cats)


def _plain(value: Any) -> Any:
    """numpy scalars to Python scalars, so categories serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value
