"""OpenAPI fragments built from a model's signature, so the docs are the contract."""

from __future__ import annotations

from typing import Any

from modelyard.contracts import RecordValidator, Schema
from modelyard.registry import LoadedModel

_ERROR = {
    "type": "object",
    "required": ["code", "message", "request_id"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "row": {"type": ["integer", "null"]},
                },
            },
        },
    },
}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _record_schema(schema: Schema, title: str) -> dict[str, Any]:
    body = RecordValidator(schema).json_schema()
    body["title"] = title
    return body


def predict_operation(model: LoadedModel, request: Schema) -> dict[str, Any]:
    """``openapi_extra`` for ``POST /v1/models/{name}/predict`` of one model.

    ``request`` is what callers send: the signature's inputs, or, for a model bound to
    a feature service, its entity keys and request-time fields.
    """
    sig = model.version.signature
    record = _record_schema(request, f"{model.name} input")
    output = {
        "type": "object",
        "title": f"{model.name} output",
        "properties": {f.name: _json_type(f.dtype) for f in sig.outputs.fields},
    }
    envelope = {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "variant": {"type": "string"},
            "request_id": {"type": "string"},
            "prediction": output,
            "predictions": {"type": "array", "items": output},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [record, {"type": "array", "items": record}]},
                    "example": {name: None for name in request.names},
                }
            },
        },
        "responses": {
            "200": {
                "description": "one prediction per input record",
                "content": {"application/json": {"schema": envelope}},
            },
            "413": error_response("the body is larger than the server's limit"),
            "422": error_response("the input does not match the model's signature"),
            "504": error_response("the model took longer than its timeout"),
        },
    }


def _json_type(dtype: str) -> dict[str, Any]:
    return {
        "int64": {"type": "integer"},
        "float64": {"type": "number"},
        "bool": {"type": "boolean"},
        "datetime": {"type": "string", "format": "date-time"},
    }.get(dtype, {"type": "string"})
