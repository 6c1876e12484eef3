"""Checking a source's columns against its view: which column, expected vs found."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pyarrow as pa

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


_ARROW_INTS = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
}
_NAIVE_UNITS = {"s": "TIMESTAMP_S", "ms": "TIMESTAMP_MS", "us": "TIMESTAMP", "ns": "TIMESTAMP_NS"}


def duck_type_of(arrow: pa.DataType) -> str:
    """The name DuckDB gives a column of Arrow type ``arrow`` (as ``DESCRIBE`` shows it),
    for the types a source check judges; a push of a few rows is checked without opening
    DuckDB, which costs more than the rest of the push."""
    if pa.types.is_dictionary(arrow):
        return duck_type_of(arrow.value_type)
    if arrow in _ARROW_INTS:
        return _ARROW_INTS[arrow]
    if pa.types.is_float32(arrow):
        return "FLOAT"
    if pa.types.is_floating(arrow):
        return "DOUBLE"
    if pa.types.is_boolean(arrow):
        return "BOOLEAN"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "VARCHAR"
    if pa.types.is_decimal(arrow):
        return f"DECIMAL({arrow.precision},{arrow.scale})"
    if pa.types.is_timestamp(arrow):
        if arrow.tz is None:
            return _NAIVE_UNITS[arrow.unit]
        return "TIMESTAMPTZ_NS" if arrow.unit == "ns" else "TIMESTAMP WITH TIME ZONE"
    if pa.types.is_null(arrow):
        return '"NULL"'
    return str(arrow).upper()


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
