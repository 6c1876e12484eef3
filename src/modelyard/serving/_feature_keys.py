"""The entity keys of a feature request, as the service's join keys want them.

A POST body gives them as JSON (key columns, or one object per entity); a GET gives each
join key as a repeated query parameter, as text. Either way every join key must be
there, no other name, at least one entity and at most the server's limit, and each
value of its key's declared type. JSON numbers convert between int and float where
nothing is lost (as ``ws.features.get_online`` does); text converts to the declared
type (``?user_id=7`` is the integer 7). A wrong value is a 422 naming the key, the value
and the row, never a "missing" feature: an online row is found by the exact key.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson

from modelyard.errors import FieldError, PayloadTooLargeError, SchemaValidationError

if TYPE_CHECKING:
    from modelyard.contracts import Field

Columns = dict[str, list[Any]]
MAX_ERRORS = 10  # one line per bad value says enough; a thousand would hide the first

_SHAPE = 'send {"entities": {"user_id": [1, 2]}} or {"entities": [{"user_id": 1}, ...]}'
_TOP = frozenset({"entities", "full_feature_names"})
FULL = "full_feature_names"


def invalid(field: str, message: str, row: int | None = None) -> SchemaValidationError:
    return SchemaValidationError([FieldError(field, message, row)], what="request")


def parse_body(body: bytes) -> tuple[Columns, bool]:
    """(key columns as sent, full_feature_names) of a POST body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid("body", f"body is not valid JSON ({exc}); {_SHAPE}") from None
    if not isinstance(doc, dict) or "entities" not in doc:
        raise invalid("body", f"the body is not an object with 'entities'; {_SHAPE}")
    extra = sorted(set(doc) - _TOP)
    if extra:
        raise invalid(extra[0], f"unknown field '{extra[0]}'; the body takes entities and {FULL}")
    full = doc.get(FULL, False)
    if not isinstance(full, bool):
        raise invalid(FULL, f"{FULL} is true or false, not {full!r}")
    return _columns(doc["entities"]), full


def _columns(entities: Any) -> Columns:
    if isinstance(entities, dict) and entities:
        values = list(entities.values())
        lists = [isinstance(v, list) for v in values]
        if not any(lists) and not any(isinstance(v, dict) for v in values):
            return {k: [v] for k, v in entities.items()}  # one entity: {"user_id": 1}
        if not all(lists):
            bad = next(k for k, v in entities.items() if not isinstance(v, list))
            raise invalid(bad, f"'{bad}' is not a list of values; {_SHAPE}")
        sizes = {len(v) for v in values}
        if len(sizes) > 1:
            shown = ", ".join(f"{k}: {len(v)}" for k, v in entities.items())
            raise invalid(
                "entities",
                f"the key columns differ in length ({shown}); send one value per entity "
                "for every join key",
            )
        return dict(entities)
    if isinstance(entities, list) and entities:
        names: dict[str, None] = {}
        for row, item in enumerate(entities):
            if not isinstance(item, dict):
                raise invalid("entities", f"entity {row} is not an object; {_SHAPE}", row)
            names.update(dict.fromkeys(item))
        columns: Columns = {name: [] for name in names}
        for row, item in enumerate(entities):
            for name, column in columns.items():
                if name not in item:
                    raise invalid(name, f"entity {row} has no value for '{name}'", row)
                column.append(item[name])
        return columns
    if isinstance(entities, dict | list):
        raise invalid("entities", "no entities: send at least one")
    raise invalid("entities", f"entities is {type(entities).__name__}; {_SHAPE}")


def parse_query(query: bytes) -> tuple[Columns, bool]:
    """(key columns as text, full_feature_names) of ``?user_id=1&user_id=2``."""
    columns: Columns = {}
    full = False
    text = query.decode("utf-8", "replace")
    quoted = "%" in text or "+" in text
    for part in text.split("&"):  # as parse_qsl does, at half its cost
        if not part:
            continue
        name, _, value = part.partition("=")
        if quoted:
            name = unquote_plus(name, errors="replace")
            value = unquote_plus(value, errors="replace")
        if name == FULL:
            if value.lower() not in _BOOL:
                raise invalid(FULL, f"{FULL}={value!r}: send true or false")
            full = _BOOL[value.lower()]
            continue
        columns.setdefault(name, []).append(value)
    return columns, full


def checked_columns(
    columns: Mapping[str, list[Any]],
    keys: Sequence[Field],
    service: str,
    max_entities: int,
    *,
    text: bool,
) -> tuple[Columns, int]:
    """Every join key's values, converted to its dtype, and the number of entities.

    ``text``: the values are query parameters (GET), else JSON values (POST).
    """
    names = [k.name for k in keys]
    unknown = [n for n in columns if n not in names]
    if unknown:
        raise invalid(
            unknown[0],
            f"'{unknown[0]}' is not a join key of feature service '{service}'; its join keys: "
            f"{', '.join(names)}",
        )
    missing = [n for n in names if n not in columns]
    if missing:
        how = f"?{missing[0]}=VALUE" if text else f'{{"entities": {{"{missing[0]}": [...]}}}}'
        raise invalid(
            missing[0],
            f"join key '{missing[0]}' of feature service '{service}' is missing; send {how}",
        )
    counts = {n: len(columns[n]) for n in names}
    count = counts[names[0]]
    if text and len(set(counts.values())) > 1:  # a body's columns are checked as parsed
        shown = ", ".join(f"{n}: {c}" for n, c in counts.items())
        raise invalid(
            names[0],
            f"the join keys are given different numbers of times ({shown}); repeat each "
            "once per entity",
        )
    if count == 0:
        raise invalid(names[0], f"no entities: send at least one value of '{names[0]}'")
    if count > max_entities:
        raise PayloadTooLargeError(
            f"the request asks for {count} entities, more than the {max_entities} this server "
            "takes in one request; split it into smaller requests"
        )
    errors: list[FieldError] = []
    out: Columns = {}
    for key in keys:
        out[key.name] = _converted(key, columns[key.name], text, errors)
    if errors:
        raise SchemaValidationError(errors, what="request")
    return out, count


def _converted(key: Field, values: list[Any], text: bool, errors: list[FieldError]) -> list[Any]:
    exact = _EXACT.get(key.dtype)
    if exact is None or (exact is str if text else all(type(v) is exact for v in values)):
        return values  # the common case: nothing to convert; other dtypes: the reader checks
    convert = (_FROM_TEXT if text else _FROM_JSON)[key.dtype]
    out: list[Any] = []
    for row, value in enumerate(values):
        converted = None if value is None else convert(value)
        if converted is _WRONG:
            if len(errors) < MAX_ERRORS:
                shown = f"{key.name}={value}" if text else f"{value!r}"
                errors.append(
                    FieldError(
                        key.name,
                        f"join key '{key.name}' is {key.dtype}; {shown} is not {_HINT[key.dtype]}",
                        row,
                    )
                )
            continue
        out.append(converted)
    return out


_WRONG = object()
_EXACT: dict[str, type] = {"int64": int, "float64": float, "string": str, "bool": bool}
_HINT = {
    "int64": "an integer",
    "float64": "a finite number",
    "string": "text (JSON: in quotes)",
    "bool": "true or false",
}
_BOOL = {"true": True, "false": False, "1": True, "0": False}
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _int_text(value: str) -> Any:
    digits = value[1:] if value[:1] in ("-", "+") else value
    if digits.isascii() and digits.isdigit():
        return int(value)
    if _FLOAT.fullmatch(value):  # "1.0" is the key 1, as a JSON body's 1.0 is (exactly)
        number = decimal.Decimal(value)
        if number == number.to_integral_value():
            return int(number)
    return _WRONG


def _float_text(value: str) -> Any:
    return float(value) if _FLOAT.fullmatch(value) and math.isfinite(float(value)) else _WRONG


def _int_json(value: Any) -> Any:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)  # 1.0 is the key 1, as get_online takes it
    return _WRONG


def _float_json(value: Any) -> Any:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return _WRONG


_FROM_TEXT: dict[str, Callable[[Any], Any]] = {
    "int64": _int_text,
    "float64": _float_text,
    "string": lambda v: v,
    "bool": lambda v: _BOOL.get(v.lower(), _WRONG),
}
_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "int64": _int_json,
    "float64": _float_json,
    "string": lambda v: v if type(v) is str else _WRONG,
    "bool": lambda v: v if type(v) is bool else _WRONG,
}
