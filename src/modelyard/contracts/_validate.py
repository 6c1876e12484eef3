"""Validate records (JSON) and frames against a Schema, one message per bad field.

JSON records are checked by a pydantic ``TypeAdapter`` built once per schema and fed
the raw request bytes (``validate_json``): parsing and checking happen in Rust in one
pass, which keeps the serving path cheap. Frames are checked column by column.
"""

from __future__ import annotations

import difflib
import itertools
import math
from functools import cached_property
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
import pandas as pd
import pydantic
from pydantic import AwareDatetime, ConfigDict, TypeAdapter
from typing_extensions import TypedDict

from modelyard.contracts._schema import Field, Schema, _plain
from modelyard.errors import FieldError, SchemaValidationError

_PY_TYPES: dict[str, type] = {
    "int64": int,
    "float64": float,
    "bool": bool,
    "string": str,
    # Timestamps must carry a time zone (see DESIGN.md); naive ones are rejected.
    "datetime": AwareDatetime,
}


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _annotation(field: Field, max_string_length: int | None = None) -> Any:
    if field.categories is not None:
        base: Any = Literal[tuple(field.categories)]
    else:
        base = _PY_TYPES[field.dtype]
        constraints: dict[str, Any] = {"strict": True}
        if field.min is not None:
            constraints["ge"] = field.min
        if field.max is not None:
            constraints["le"] = field.max
        if field.dtype == "int64":
            # JSON integers have no size; one past int64 would reach the model as an object.
            constraints["ge"] = max(constraints.get("ge", INT64_MIN), INT64_MIN)
            constraints["le"] = min(constraints.get("le", INT64_MAX), INT64_MAX)
        if field.min_length is not None:
            constraints["min_length"] = field.min_length
        if field.max_length is not None:
            constraints["max_length"] = field.max_length
        if field.dtype == "string" and max_string_length is not None:
            # Checked in the same pass as the type (pydantic-core), on string fields only.
            # A field that declares its own max_length (an image's base64, say) keeps it:
            # the signature is the model's explicit contract; the body limit still holds.
            constraints.setdefault("max_length", max_string_length)
        if field.dtype == "datetime":
            # ISO strings must be accepted from JSON; strict would refuse them.
            constraints = {}
        base = Annotated[base, pydantic.Field(**constraints)]
    if field.nullable:
        return NotRequired[base | None]
    return base


class RecordValidator:
    """Checks JSON records against a schema and returns them as columns.

    ``max_string_length`` (in ``validate_json`` and ``validate_python``) refuses a string
    field's value with more characters, beside the field's own ``max_length``; each limit
    gets its own compiled validator, built on first use.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._by_limit: dict[int | None, tuple[TypeAdapter[Any], TypeAdapter[Any]]] = {}
        self._record_types: dict[int | None, Any] = {}

    @property
    def record_type(self) -> Any:
        return self._record_type(None)

    def _record_type(self, max_string_length: int | None) -> Any:
        found = self._record_types.get(max_string_length)
        if found is None:
            fields = {f.name: _annotation(f, max_string_length) for f in self.schema.fields}
            record: Any = TypedDict("Record", fields)  # type: ignore[misc]
            record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
            found = self._record_types[max_string_length] = record
        return found

    def _adapters(
        self, max_string_length: int | None = None
    ) -> tuple[TypeAdapter[Any], TypeAdapter[Any]]:
        found = self._by_limit.get(max_string_length)
        if found is None:
            rec = self._record_type(max_string_length)
            found = (TypeAdapter(rec), TypeAdapter(list[rec]))  # type: ignore[valid-type]
            self._by_limit[max_string_length] = found
        return found

    def json_schema(self) -> dict[str, Any]:
        return self._adapters()[0].json_schema()

    def validate_json(
        self, body: bytes | str, *, max_string_length: int | None = None
    ) -> tuple[dict[str, list[Any]], bool]:
        """Parse and check ``body`` (one record or a list); return (columns, was_a_list)."""
        raw = body.encode() if isinstance(body, str) else body
        many = raw.lstrip()[:1] == b"["
        one, lst = self._adapters(max_string_length)
        try:
            parsed = (lst if many else one).validate_json(raw)
        except pydantic.ValidationError as exc:
            raise SchemaValidationError(self._field_errors(exc)) from None
        records = parsed if many else [parsed]
        if not records:
            raise SchemaValidationError([FieldError("body", "the list of records is empty")])
        return self._columns(records), many

    def validate_python(
        self, records: Any, *, max_string_length: int | None = None
    ) -> dict[str, list[Any]]:
        """Check a record (dict) or a list of records; return columns."""
        many = isinstance(records, list)
        one, lst = self._adapters(max_string_length)
        try:
            parsed = (lst if many else one).validate_python(records)
        except pydantic.ValidationError as exc:
            raise SchemaValidationError(self._field_errors(exc)) from None
        return self._columns(parsed if many else [parsed])

    def _columns(self, records: list[dict[str, Any]]) -> dict[str, list[Any]]:
        columns = {name: [r.get(name) for r in records] for name in self.schema.names}
        self._check_finite(columns)
        return columns

    @cached_property
    def _finite_fields(self) -> tuple[str, ...]:
        return tuple(
            f.name for f in self.schema.fields if f.dtype == "float64" and not f.allow_non_finite
        )

    def _check_finite(self, columns: dict[str, list[Any]]) -> None:
        """Refuse NaN and infinities (JSON's NaN, Infinity, and 1e999, which reads as inf).

        One C-level sum over the float values is the fast pass: it is finite when every
        value is (pydantic's allow_inf_nan=False would double the cost of validate_json).
        """
        names = self._finite_fields
        if not names:
            return
        try:
            if math.isfinite(sum(itertools.chain.from_iterable(columns[n] for n in names))):
                return
        except TypeError:  # nulls in a nullable field: take the slow pass
            pass
        errors = []
        for name in names:
            for row, value in enumerate(columns[name]):
                if value is not None and not math.isfinite(value):
                    errors.append(FieldError(name, non_finite_message(value), row))
                    break
        if errors:  # else a sum of large finite values overflowed: all fine
            raise SchemaValidationError(errors)

    def _field_errors(self, exc: pydantic.ValidationError) -> list[FieldError]:
        out: list[FieldError] = []
        for err in exc.errors(include_url=False):
            loc = list(err["loc"])
            row = int(loc.pop(0)) if loc and isinstance(loc[0], int) else None
            if not loc:
                msg = "expected a JSON object or a list of JSON objects"
                if err["type"] == "json_invalid":
                    msg = f"body is not valid JSON: {err['msg']}"
                out.append(FieldError("body", msg, row))
                continue
            field = str(loc[0])
            out.append(FieldError(field, self._message(field, err), row))
        return out

    def _message(self, field: str, err: Any) -> str:
        kind = err["type"]
        if kind == "extra_forbidden":
            close = difflib.get_close_matches(field, self.schema.names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "remove it"
            return f"unknown field; {hint}"
        if kind == "missing":
            return f"required field is missing; send a {self.schema[field].dtype} value"
        if kind == "finite_number":
            return non_finite_message(err["input"])
        if kind == "string_too_long" and field in self.schema.names:
            limit = err["ctx"]["max_length"]
            own = self.schema[field].max_length
            if own is None or limit < own:  # the caller's max_string_length, not the field's
                return (
                    f"string has {len(err['input'])} characters, more than the {limit} "
                    "this server takes in one value; send a shorter value"
                )
            return (
                f"has {len(err['input'])} characters; this field takes at most {limit} "
                "characters (its signature's max_length): send a shorter value"
            )
        if field in self.schema.names and self.schema[field].dtype == "int64":
            value = err.get("input")
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                return f"{value} does not fit int64; send one from {INT64_MIN} to {INT64_MAX}"
        if field in self.schema.names:
            spec = self.schema[field]
            expected = (
                f"one of {list(spec.categories)}" if spec.categories is not None else spec.dtype
            )
            wanted = (
                expected
                if spec.categories is not None
                else f"{'an' if spec.dtype[0] in 'aeiou' else 'a'} {spec.dtype} value"
            )
            value = err.get("input")
            if value is None and not spec.nullable:
                return f"is null; send {wanted} (the field is not nullable)"
            if kind.endswith("_type") or kind in ("literal_error", "enum"):
                return f"got {_json_kind(value)}; send {wanted}"
            if kind == "string_too_short":
                least = err["ctx"]["min_length"]
                unit = "character" if least == 1 else "characters"
                return f"has {len(value)} characters; send at least {least} {unit}"
            return f"{err['msg']} (expected {expected})"
        return str(err["msg"])


def _json_kind(value: Any) -> str:
    """What a caller sent, in JSON's words: ``a number (5)``, ``a list``, ``a string``."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"a string ({shown!r})"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def non_finite_message(value: Any) -> str:
    """Why a NaN or an infinity is refused, and the two ways out."""
    number = float(value)
    what = "NaN" if number != number else ("Infinity" if number > 0 else "-Infinity")
    overflow = "" if what == "NaN" else " (numbers beyond ±1.8e308 overflow float64 to it)"
    return (
        f"value is {what}{overflow}; send a finite number, "
        "or declare the field with allow_non_finite=True"
    )


_KIND_OK = {
    "int64": "iu",
    "float64": "iuf",
    "bool": "b",
    "string": "OUS",
    "datetime": "M",
}


def validate_frame(schema: Schema, frame: pd.DataFrame) -> pd.DataFrame:
    """Check a DataFrame against ``schema``; return its columns in schema order."""
    errors: list[FieldError] = []
    missing = [n for n in schema.names if n not in frame.columns]
    for name in missing:
        errors.append(FieldError(name, "required column is missing"))
    for field in schema.fields:
        if field.name in missing:
            continue
        col = frame[field.name]
        nulls = col.isna()
        if not field.nullable and bool(nulls.any()):
            row = int(nulls.to_numpy().argmax())
            errors.append(FieldError(field.name, "null value in a non-nullable column", row))
            continue
        values = col[~nulls]
        dtype = values.dtype
        if isinstance(dtype, pd.CategoricalDtype):  # judge a categorical by its categories
            dtype = dtype.categories.dtype
            values = values.astype(dtype)
        kinds = _KIND_OK.get(field.dtype)
        if kinds is not None and len(values) and dtype.kind not in kinds:
            errors.append(
                FieldError(field.name, f"dtype {col.dtype} is not {field.dtype}; cast the column")
            )
            continue
        if field.dtype == "datetime" and len(values) and values.dt.tz is None:
            errors.append(
                FieldError(
                    field.name,
                    "timestamps have no time zone; localize them, e.g. .dt.tz_localize('UTC')",
                )
            )
            continue
        present = np.flatnonzero(~nulls.to_numpy())  # frame row of each entry of ``values``
        checks: list[tuple[pd.Series, str]] = []
        if field.dtype == "float64" and not field.allow_non_finite and dtype.kind == "f":
            infinite = np.isinf(values.to_numpy())
            if infinite.any():  # NaN is a null here (pandas); infinities are checked
                first = int(infinite.argmax())
                message = non_finite_message(values.iloc[first])
                errors.append(FieldError(field.name, message, int(present[first])))
                continue
        if field.min is not None:
            checks.append((values < field.min, f"below the minimum {field.min}"))
        if field.max is not None:
            checks.append((values > field.max, f"above the maximum {field.max}"))
        if field.min_length is not None or field.max_length is not None:
            lengths = values.astype(str).str.len()
            if field.min_length is not None:
                short = f"shorter than {field.min_length} characters"
                checks.append((lengths < field.min_length, short))
            if field.max_length is not None:
                long = f"longer than {field.max_length} characters"
                checks.append((lengths > field.max_length, long))
        if field.categories is not None:
            checks.append(
                (~values.isin(list(field.categories)), f"not one of {list(field.categories)}")
            )
        for bad, what in checks:
            if len(values) and bool(bad.any()):
                first = int(bad.to_numpy().argmax())
                value = _plain(values.iloc[first])
                # A personal value is not repeated in an error: errors reach logs and screens.
                shown = "a value" if field.pii else f"value {value!r}"
                errors.append(FieldError(field.name, f"{shown} is {what}", int(present[first])))
    if errors:
        raise SchemaValidationError(errors)
    return frame[schema.names]
