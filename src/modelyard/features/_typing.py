"""Checking a source's columns against its view: which column, expected vs found."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.features._definitions import FeatureView

_INTS = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)
_FLOATS = ("FLOAT", "DOUBLE", "REAL")

# Which DuckDB column types can hold each declared dtype (widening int -> float is fine).
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "int64": _INTS,
    "float64": _INTS + _FLOATS + ("DECIMAL",),
    "bool": ("BOOLEAN",),
    "string": ("VARCHAR",),
    "datetime": ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS"),
}
# DuckDB names microsecond UTC timestamps "TIMESTAMP WITH TIME ZONE" and nanosecond ones
# (pandas' default) "TIMESTAMPTZ_NS"; the naive kinds carry their unit in the name.
_AWARE_TIMES = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS")
_NAIVE_TIMES = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")


def _base(duck_type: str) -> str:
    return duck_type.split("(", 1)[0].strip().upper()


def accepts(dtype: str, duck_type: str) -> bool:
    return _base(duck_type) in _ACCEPTS.get(dtype, ())


def check_source_columns(view: FeatureView, columns: Mapping[str, str]) -> None:
    """Raise a one-line error for the first column of ``view`` its source lacks or mistypes."""
    src = view.source
    where = f"feature view '{view.name}': source column"
    for name in filter(None, (src.timestamp_field, src.created_timestamp_field)):
        found = columns.get(name)
        if found is None:
            raise InvalidInputError(
                f"{where} '{name}' (a timestamp) is missing; found {', '.join(columns)}"
            )
        if _base(found) in _NAIVE_TIMES:
            raise InvalidInputError(
                f"{where} '{name}' holds timestamps without a time zone; store them as "
                "UTC-aware timestamps (pandas: .dt.tz_localize('UTC'))"
            )
        if _base(found) not in _AWARE_TIMES:
            raise InvalidInputError(f"{where} '{name}': expected a timestamp, found {found}")
    for field in (*view.entity.join_keys, *view.features):
        found = columns.get(field.name)
        if found is None:
            raise InvalidInputError(
                f"{where} '{field.name}' is missing; found {', '.join(columns)}"
            )
        if not accepts(field.dtype, found):
            raise InvalidInputError(
                f"{where} '{field.name}': expected {field.dtype}, found {found}; "
                "cast it in the source or change the declared dtype"
            )
