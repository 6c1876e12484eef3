"""Open Inference Protocol v2 tensors <-> validated columns, shared by REST and gRPC.

A request names one tensor per request field (shape ``[n]`` or ``[n, 1]``), or, when
every field is numeric, sends one ``[n, k]`` tensor whose columns follow the signature.
Either way the values go through the same record validator as the friendly route, so
bad input gets one message per field and never reaches the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.contracts import RecordValidator, Schema, non_finite_message
from modelyard.errors import FieldError, SchemaValidationError
from modelyard.serving._limits import too_many_rows

# OIP datatype -> numpy dtype (little-endian, as the binary extensions send them).
NUMPY_OF = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_DATATYPE_OF_NUMPY = {dtype: name for name, dtype in NUMPY_OF.items()}
DATATYPE_OF_FIELD = {
    "int64": "INT64",
    "float64": "FP64",
    "bool": "BOOL",
    "string": "BYTES",
    "datetime": "BYTES",
}
_NUMERIC = frozenset({"int64", "float64", "bool"})

EncodeRow = Callable[[np.ndarray[Any, Any], int], Any]
"""One row's array (and its row number) -> the field's value; raises a 422 when bad."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray[Any, Any]


def _bad(name: str, message: str) -> SchemaValidationError:
    return SchemaValidationError([FieldError(name, message)])


def from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> Tensor:
    """A tensor from the binary form (raw little-endian bytes; BYTES length-prefixed)."""
    count = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        items: list[str] = []
        pos = 0
        while pos < len(raw):
            size = int.from_bytes(raw[pos : pos + 4], "little")
            items.append(raw[pos + 4 : pos + 4 + size].decode("utf-8"))
            pos += 4 + size
        values: np.ndarray[Any, Any] = np.array(items, dtype=object)
    elif datatype in NUMPY_OF:
        values = np.frombuffer(raw, dtype=NUMPY_OF[datatype])
    else:
        raise _bad(
            name, f"datatype {datatype!r} is not supported; use one of {sorted(NUMPY_OF)} or BYTES"
        )
    if values.size != count:
        raise _bad(name, f"shape {shape} needs {count} values, the tensor has {values.size}")
    return Tensor(name, datatype, shape, values.reshape(shape) if shape else values)


def from_list(name: str, datatype: str, shape: list[int], data: Any) -> Tensor:
    """A tensor from JSON ``data`` (flat or nested, row-major)."""
    if datatype != "BYTES" and datatype not in NUMPY_OF:
        raise _bad(
            name, f"datatype {datatype!r} is not supported; use one of {sorted(NUMPY_OF)} or BYTES"
        )
    try:
        dtype = object if datatype == "BYTES" else NUMPY_OF[datatype]
        if datatype != "BYTES" and NUMPY_OF[datatype].kind in "iub":
            # numpy would truncate 1.5 to 1 (or read 2 as True); refuse what does not fit.
            loose = np.asarray(data).reshape(-1)
            if loose.dtype.kind not in "iub" and loose.size:
                raise ValueError(f"{loose.dtype.name} values are not {datatype}")
        with np.errstate(over="ignore"):  # an overflow to inf is refused just below
            values = np.asarray(data, dtype=dtype).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _bad(name, f"data does not fit datatype {datatype}: {exc}") from None
    if values.dtype.kind == "f" and values.dtype.itemsize < 8 and not np.isfinite(values).all():
        wide = np.asarray(data, dtype=np.float64).reshape(-1)
        overflow = np.flatnonzero(np.isinf(values) & np.isfinite(wide))
        if overflow.size:
            first = int(overflow[0])
            raise SchemaValidationError(
                [
                    FieldError(
                        name,
                        f"value {wide[first]:g} overflows {datatype}; send it as FP64 "
                        "or scale it into range",
                        first,
                    )
                ]
            )
    count = int(np.prod(shape)) if shape else values.size
    if values.size != count:
        raise _bad(name, f"shape {shape} needs {count} values, the tensor has {values.size}")
    return Tensor(name, datatype, shape, values.reshape(shape))


def to_columns(
    schema: Schema,
    validator: RecordValidator,
    tensors: list[Tensor],
    *,
    max_rows: int | None = None,
    max_string_length: int | None = None,
    tensor_inputs: Mapping[str, EncodeRow] | None = None,
) -> tuple[dict[str, list[Any]], int]:
    """Validated columns (in schema order) and the row count, from request tensors.

    ``tensor_inputs`` names fields whose value a request may send as an array per row (a
    tensor of three or more dimensions, e.g. an image model's pixels), each with the
    function that checks one row's array and turns it into the field's value.

    More rows than ``max_rows`` is a 413 before any record is built; a string longer than
    ``max_string_length`` characters is a 422 naming its field (``_limits.py``).
    """
    by_name = {t.name: t for t in tensors}
    if len(by_name) < len(tensors):  # one would silently win over the other
        names = [t.name for t in tensors]
        twice = next(n for n in names if names.count(n) > 1)
        raise _bad(twice, "input tensor sent twice; send each input once")
    raw: dict[str, Any] = {}
    if len(tensors) == 1 and tensors[0].name not in schema.names and len(tensors[0].shape) == 2:
        tensor = tensors[0]
        if not all(f.dtype in _NUMERIC for f in schema.fields):
            raise _bad(
                tensor.name,
                "one 2-D tensor works for numeric inputs only; send one tensor per field "
                f"({', '.join(schema.names)})",
            )
        if tensor.shape[1] != len(schema.fields):
            raise _bad(
                tensor.name,
                f"shape {tensor.shape}: expected [rows, {len(schema.fields)}] with columns "
                f"{', '.join(schema.names)}",
            )
        if max_rows is not None and tensor.shape[0] > max_rows:
            raise too_many_rows(tensor.shape[0], max_rows)
        if tensor.shape[0] > 0 and tensor.values.dtype.kind == "f" and _plain_floats(schema):
            # Every field a float with no bounds: the record validator could only accept
            # these values, so skip building records (about 30 us a request).
            matrix = tensor.values.astype(np.float64, copy=False)
            _check_finite(schema, matrix)
            return {f.name: matrix[:, i].tolist() for i, f in enumerate(schema.fields)}, len(matrix)
        for i, f in enumerate(schema.fields):
            raw[f.name] = tensor.values[:, i]
    else:
        unknown = [n for n in by_name if n not in schema.names]
        if unknown:
            raise _bad(
                unknown[0], f"unknown input tensor; the inputs are {', '.join(schema.names)}"
            )
        for name, tensor in by_name.items():
            encode = (tensor_inputs or {}).get(name)
            if encode is not None and tensor.datatype != "BYTES":
                if len(tensor.shape) < 3:
                    raise _bad(
                        name,
                        f"shape {tensor.shape}: this field's pixels go as [rows, height, "
                        "width] or [rows, channels, height, width] (one image: rows = 1), "
                        "or as BYTES of base64 PNG/JPEG",
                    )
                raw[name] = _encoded(tensor, encode, max_rows)
                continue
            if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
                raise _bad(
                    name, f"shape {tensor.shape}: a field tensor has shape [rows] or [rows, 1]"
                )
            raw[name] = tensor.values.reshape(-1)
    lengths = {len(v) for v in raw.values()}
    if len(lengths) > 1:
        raise _bad(
            "inputs",
            f"tensors have different row counts {sorted(lengths)}; send one value per row in each",
        )
    rows = lengths.pop() if lengths else 0
    if rows == 0:
        raise _bad("inputs", "no rows; send at least one value per input tensor")
    if max_rows is not None and rows > max_rows:
        raise too_many_rows(rows, max_rows)
    names = list(raw)
    lists = [_python(v, schema[n].dtype) for n, v in raw.items()]
    records = [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]
    return validator.validate_python(records, max_string_length=max_string_length), rows


def _encoded(tensor: Tensor, encode: EncodeRow, max_rows: int | None) -> np.ndarray[Any, Any]:
    """Each row of an array tensor as its field's value; every bad row named in one 422."""
    rows = tensor.shape[0]
    if max_rows is not None and rows > max_rows:
        raise too_many_rows(rows, max_rows)
    values: list[Any] = []
    errors: list[FieldError] = []
    for row in range(rows):
        try:
            values.append(encode(tensor.values[row], row))
        except SchemaValidationError as exc:
            errors.extend(exc.errors)
    if errors:
        raise SchemaValidationError(errors)
    return np.array(values, dtype=object)


def _check_finite(schema: Schema, matrix: np.ndarray[Any, Any]) -> None:
    """Refuse NaN and infinities where the field does not allow them (one vector pass)."""
    if np.isfinite(matrix).all():
        return
    errors = []
    for i, f in enumerate(schema.fields):
        bad = np.flatnonzero(~np.isfinite(matrix[:, i]))
        if bad.size and not f.allow_non_finite:
            row = int(bad[0])
            errors.append(FieldError(f.name, non_finite_message(matrix[row, i]), row))
    if errors:
        raise SchemaValidationError(errors)


def _plain_floats(schema: Schema) -> bool:
    return all(
        f.dtype == "float64"
        and not f.nullable
        and f.min is None
        and f.max is None
        and f.categories is None
        for f in schema.fields
    )


def _python(values: np.ndarray[Any, Any], dtype: str) -> list[Any]:
    if values.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
    if dtype == "int64" and values.dtype.kind == "f":
        # JSON clients often send whole numbers as floats; keep them if they are whole.
        if np.all(np.mod(values, 1) == 0):
            whole: list[Any] = values.astype(np.int64).tolist()
            return whole
    if dtype == "float64" and values.dtype.kind in "iu":
        floats: list[Any] = values.astype(np.float64).tolist()
        return floats
    result: list[Any] = values.tolist()
    return result


def from_columns(outputs: dict[str, Any], wanted: list[str] | None, schema: Schema) -> list[Tensor]:
    """Output tensors, one per output column (all unless ``wanted`` names some).

    ``schema`` (the signature's outputs) gives the datatype of columns that arrive as
    Python objects, e.g. class labels.
    """
    names = list(outputs)
    if wanted:
        missing = [w for w in wanted if w not in outputs]
        if missing:
            raise _bad(missing[0], f"unknown output; the outputs are {', '.join(names)}")
        names = wanted
    tensors = []
    for name in names:
        values = np.asarray(outputs[name])
        declared = schema.fields[schema.names.index(name)].dtype if name in schema.names else None
        if values.dtype.kind == "O" and declared in _NUMERIC:
            values = values.astype(
                {"int64": np.int64, "float64": np.float64, "bool": np.bool_}[declared]
            )
        if values.dtype.kind in "OUS":
            values = np.array([str(v) for v in values.tolist()], dtype=object)
            datatype = "BYTES"
        elif values.dtype.kind == "M":
            values = np.array(
                [str(v) for v in values.astype("datetime64[us]").tolist()], dtype=object
            )
            datatype = "BYTES"
        else:
            datatype = _datatype(values.dtype)
        tensors.append(Tensor(name, datatype, [len(values)], values))
    return tensors


def _datatype(dtype: np.dtype[Any]) -> str:
    return _DATATYPE_OF_NUMPY.get(dtype.newbyteorder("<"), "FP64")


def to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        parts = []
        for v in tensor.values.tolist():
            data = v if isinstance(v, bytes) else str(v).encode()
            parts.append(len(data).to_bytes(4, "little") + data)
        return b"".join(parts)
    return np.ascontiguousarray(tensor.values, dtype=NUMPY_OF[tensor.datatype]).tobytes()
