"""``multipart/form-data`` bodies on the friendly predict route: files uploaded as fields.

``curl -F image=@digit.png -F client_id=ann URL`` sends one record: a file part named
after a string field of the signature becomes that field's value *base64-encoded* (the
text a JSON client would send, so the same validator and model path and the same
prediction log take it); a text part sets a field. Several files under one name make
several rows (the text fields repeat on each). python-multipart (Starlette's own form
parser) splits the parts; the body is already read, within the server's body limit.
A body that is an image itself (``content-type: image/png``) is the one image field of
an image model (``image_records``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from modelyard.contracts import Schema
from modelyard.errors import (
    FieldError,
    InvalidInputError,
    SchemaValidationError,
    UnsupportedMediaTypeError,
)

MAX_PARTS = 1000


def is_multipart(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith("multipart/form-data")


def is_image(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith("image/")


def image_records(body: bytes, image_fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A body that *is* an image (``content-type: image/png``): one record, the model's one
    image field (its ``tensor_inputs``) holding it base64-encoded."""
    if len(image_fields) != 1:
        raise UnsupportedMediaTypeError(
            "this model takes no image body; send JSON (content-type: application/json)"
            if not image_fields
            else "this model takes several images; upload each as its field's file part "
            "(multipart/form-data: curl -F FIELD=@file.png)"
        )
    (field,) = image_fields
    return [{field: base64.b64encode(body).decode("ascii")}]


def parts_of(body: bytes, content_type: str) -> list[tuple[str, bytes, bool]]:
    """(field name, data, is a file) for every part of the body, in order."""
    from python_multipart import MultipartParser
    from python_multipart.multipart import parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInputError(
            "multipart/form-data without a boundary; let the client build the header "
            "(curl -F image=@file.png URL)"
        )
    parts: list[tuple[str, bytes, bool]] = []
    header: dict[bytes, bytes] = {}
    name = bytearray()
    value = bytearray()
    data = bytearray()

    def on_header_field(chunk: bytes, start: int, end: int) -> None:
        name.extend(chunk[start:end])

    def on_header_value(chunk: bytes, start: int, end: int) -> None:
        value.extend(chunk[start:end])

    def on_header_end() -> None:
        header[bytes(name).lower()] = bytes(value)
        name.clear()
        value.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        data.extend(chunk[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(header.get(b"content-disposition", b""))
        field = disposition.get(b"name", b"").decode("utf-8", "replace")
        parts.append((field, bytes(data), b"filename" in disposition))
        header.clear()
        data.clear()
        if len(parts) > MAX_PARTS:
            raise InvalidInputError(f"more than {MAX_PARTS} parts; send fewer files per request")

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except InvalidInputError:
        raise
    except Exception as exc:  # python-multipart's own errors: a malformed body
        raise InvalidInputError(f"the multipart body is malformed ({exc}); resend it") from None
    return parts


def records_of(body: bytes, content_type: str, schema: Schema) -> list[dict[str, Any]]:
    """The request's records: one per uploaded file (or one, with no file)."""
    files: dict[str, list[str]] = {}
    fields: dict[str, Any] = {}
    for name, data, is_file in parts_of(body, content_type):
        if name not in schema.names:
            raise SchemaValidationError(
                [
                    FieldError(
                        name or "body", f"unknown field; the inputs are {', '.join(schema.names)}"
                    )
                ]
            )
        if is_file:
            if schema[name].dtype != "string":
                raise SchemaValidationError(
                    [
                        FieldError(
                            name, "a file goes to a string field (an image); send this as text"
                        )
                    ]
                )
            files.setdefault(name, []).append(base64.b64encode(data).decode("ascii"))
        else:
            if name in fields:
                raise SchemaValidationError(
                    [FieldError(name, "sent twice; send each text field once")]
                )
            try:
                fields[name] = _typed(data.decode("utf-8"), schema[name].dtype)
            except UnicodeDecodeError:
                raise SchemaValidationError(
                    [FieldError(name, "is not UTF-8 text; upload binary data as a file part")]
                ) from None
            except ValueError:
                raise SchemaValidationError(
                    [FieldError(name, f"is not a {schema[name].dtype} value; send one as text")]
                ) from None
    counts = {len(v) for v in files.values()}
    if len(counts) > 1:
        raise SchemaValidationError(
            [
                FieldError(
                    "body", "the file fields hold different numbers of files; send one each per row"
                )
            ]
        )
    rows = counts.pop() if counts else 1
    return [{**fields, **{name: values[i] for name, values in files.items()}} for i in range(rows)]


def _typed(text: str, dtype: str) -> Any:
    """A form field's text as the field's type (a form carries text only)."""
    if dtype == "int64":
        return int(text)
    if dtype == "float64":
        return float(text)
    if dtype == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    return text
