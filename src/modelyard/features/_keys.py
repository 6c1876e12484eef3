"""Entity keys of an online read: the accepted forms, and their values checked by type.

An online row is found by the exact encoding of its key values, so a key of the wrong
type (``"1"`` for an int64 key) would never match anything and would read as
"missing". Such a key is refused instead, naming the key, the declared type and the
value. Numbers convert between int and float when nothing is lost (pandas turns an int
column with a gap into floats; a float64 key given as ``1`` is ``1.0``); text never
becomes a number, nor a number text. A null key (None, NaN) matches no row: "missing".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelyard.contracts import as_frame
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.contracts import Field

FORMS = (
    "a dict of key columns ({'driver_id': [1, 2]}), one key dict ({'driver_id': 1}), "
    "a list of key dicts, or a DataFrame"
)


def key_columns(entity_rows: Any) -> dict[str, list[Any]]:
    """``entity_rows`` in any accepted form, as equally long columns by key name."""
    if isinstance(entity_rows, Mapping) and entity_rows:
        values = list(entity_rows.values())
        columnar = [_is_column(v) for v in values]
        if all(columnar):
            if len({len(v) for v in values}) > 1:
                sizes = ", ".join(f"{k}: {len(v)}" for k, v in entity_rows.items())
                raise InvalidInputError(
                    f"the key columns differ in length ({sizes}); give every key the same "
                    "number of values"
                )
            if all(isinstance(v, list) for v in values):
                return {str(k): v for k, v in entity_rows.items()}
        elif not any(columnar):
            return {str(k): [v] for k, v in entity_rows.items()}
        else:
            raise InvalidInputError(f"the entity keys mix lists and single values; pass {FORMS}")
    if isinstance(entity_rows, list) and all(isinstance(r, Mapping) for r in entity_rows):
        names = {k for r in entity_rows for k in r}
        return {n: [r.get(n) for r in entity_rows] for n in names}
    frame = as_frame(entity_rows)
    return {str(c): frame[c].tolist() for c in frame.columns}


def _is_column(value: Any) -> bool:
    # Lists, tuples, numpy arrays and pandas Series; text is one value, not a column.
    return isinstance(value, list | tuple) or (
        hasattr(value, "__len__") and hasattr(value, "tolist")
    )


def checked_keys(field: Field, values: list[Any], view: str) -> list[Any]:
    """``values`` of join key ``field``, converted where lossless; the first of the wrong
    type raises, naming the key, its declared type and the value."""
    exact = _EXACT.get(field.dtype)
    if exact is None:
        return values
    if all(type(v) is exact for v in values):
        # The common case, and the serving hot path: nothing to convert.
        if exact is not int or all(_INT64_MIN <= v <= _INT64_MAX for v in values):
            return values
    convert = _CONVERT[field.dtype]
    out: list[Any] = []
    for row, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        converted = convert(value)
        if converted is _OUT_OF_RANGE:
            raise InvalidInputError(
                f"entity key '{field.name}' (of feature view '{view}') is int64, got {value!r} "
                f"in row {row}, which does not fit in 64 bits; pass an integer from "
                f"{_INT64_MIN} to {_INT64_MAX}"
            )
        if converted is _WRONG:
            raise InvalidInputError(
                f"entity key '{field.name}' (of feature view '{view}') is {field.dtype}, got "
                f"{value!r} ({type(value).__name__}) in row {row}; pass {_HINT[field.dtype]}"
            )
        out.append(converted)
    return out


_WRONG = object()
_OUT_OF_RANGE = object()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXACT: dict[str, type] = {"int64": int, "float64": float, "string": str, "bool": bool}
_HINT = {
    "int64": "an integer (JSON: a number without quotes)",
    "float64": "a number (JSON: without quotes)",
    "string": "text (JSON: in quotes)",
    "bool": "true or false",
}


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _to_int(value: Any) -> Any:
    if isinstance(value, bool) or not _is_number(value):
        return _WRONG
    if _is_nan(value):
        return None
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        return _OUT_OF_RANGE
    as_int = int(value) if float(value).is_integer() else None
    if as_int is None or as_int != value:
        return _WRONG
    return as_int if _INT64_MIN <= as_int <= _INT64_MAX else _OUT_OF_RANGE


def _to_float(value: Any) -> Any:
    if isinstance(value, bool) or not _is_number(value):
        return _WRONG
    as_float = float(value)
    if _is_nan(as_float):
        return None
    return as_float if as_float == value else _WRONG


def _is_number(value: Any) -> bool:
    # numpy scalars (np.int64, np.float32) register as numbers.Number; so do int, float.
    import numbers

    return isinstance(value, numbers.Real)


def _to_str(value: Any) -> Any:
    return str(value) if isinstance(value, str) else _WRONG


def _to_bool(value: Any) -> Any:
    # numpy's bool_ is no subclass of bool; accept it by name rather than import numpy here.
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    return _WRONG


_CONVERT = {"int64": _to_int, "float64": _to_float, "string": _to_str, "bool": _to_bool}


def checked_key_columns(
    keys: Sequence[Field], columns: Mapping[str, list[Any]], view: str
) -> list[list[Any]]:
    """The columns of ``keys`` (a view's join keys), each checked by ``checked_keys``."""
    missing = [k.name for k in keys if k.name not in columns]
    if missing:
        raise InvalidInputError(
            f"the entity rows have no '{missing[0]}' value, a join key of feature view '{view}'"
        )
    return [checked_keys(k, columns[k.name], view) for k in keys]
