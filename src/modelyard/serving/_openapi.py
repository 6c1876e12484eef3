"""OpenAPI fragments built from a model's signature, so the docs are the contract (and
those of the feature lookups, whose services change while serving).

Every route declares each status code and content type it can answer (tests/test_fuzz.py
checks the document against the server with schemathesis); errors share one schema.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from modelyard.contracts import Field, RecordValidator, Schema
from modelyard.errors import ModelyardError
from modelyard.registry import LoadedModel

_ERROR: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["code", "message", "request_id"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        # Open Inference Protocol clients (tritonclient) read the message from "error".
        "error": {"type": "string"},
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

# Why each error status is answered, for the routes that can answer it.
_WHY = {
    400: "the body is not JSON, or not the shape this route takes",
    404: "no such model or version on this server (the message lists what is served)",
    409: "the request conflicts with the current state",
    401: "no API key, or one that is unknown, revoked or expired",
    403: "the key's role or model list does not cover this route, or a cross-site request",
    413: "the body is larger than the server's limit (--max-body-bytes)",
    415: "this route takes only Content-Type: application/json",
    422: "the input does not match the model's signature (one entry per bad field)",
    500: "the model failed on this input; the error is logged with the request_id",
    503: "the model or a back end it needs is not ready; retry shortly",
    504: "the model took longer than its timeout",
    429: "the key sent more requests than its rate allows; retry after Retry-After",
}

# The answers of a prediction route besides 200 (friendly REST and OIP v2 alike).
PREDICT_ERRORS = (400, 413, 422, 500, 503, 504)


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the error statuses a route can answer."""
    return {status: error_response(_WHY[status]) for status in statuses}


def json_ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _record_schema(schema: Schema, title: str) -> dict[str, Any]:
    body = RecordValidator(schema).json_schema()
    body["title"] = title
    return body


def predict_operation(
    model: LoadedModel, request: Schema, stored_example: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``openapi_extra`` for ``POST /v1/models/{name}/predict`` of one model.

    ``request`` is what callers send: the signature's inputs, or, for a model bound to
    a feature service, its entity keys and request-time fields. ``stored_example`` is
    the version's input example (``Registry.input_example``): the docs show its first row.
    """
    sig = model.version.signature
    record = _record_schema(request, f"{model.name} input")
    output = {
        "type": "object",
        "title": f"{model.name} output",
        "properties": {f.name: _json_type(f) for f in sig.outputs.fields},
    }
    envelope = {
        "type": "object",
        "required": ["model", "version", "variant", "request_id"],
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
                    "example": example_record(request, stored_example),
                }
            },
        },
        "responses": {
            "200": json_ok("one prediction per input record", envelope),
            **{str(k): v for k, v in errors(*PREDICT_ERRORS).items()},
        },
    }


def example_record(schema: Schema, stored: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A record the model takes: the stored example's first row where it fits the request
    schema, else a value built from each field's declaration."""
    first = stored[0] if stored else {}
    record = {f.name: first[f.name] if f.name in first else _value(f) for f in schema.fields}
    try:
        RecordValidator(schema).validate_python(record)
    except ModelyardError:  # an example logged before a constraint changed, say
        record = {f.name: _value(f) for f in schema.fields}
    return record


def _value(field: Field) -> Any:
    if field.categories is not None:
        return field.categories[0]
    if field.dtype in ("int64", "float64"):
        low, high = field.min, field.max
        number = (low + high) / 2 if low is not None and high is not None else low or high or 0
        if field.dtype == "float64":
            return float(number)
        whole = math.ceil(number)
        return whole if high is None or whole <= high else math.floor(number)
    if field.dtype == "bool":
        return True
    if field.dtype == "datetime":
        return "2024-01-01T00:00:00Z"
    text = "an example text" if field.dtype == "string" else ""
    if field.min_length is not None and len(text) < field.min_length:
        text = text.ljust(field.min_length, "x")
    return text[: field.max_length] if field.max_length is not None else text


def _json_type(field: Field) -> dict[str, Any]:
    types: dict[str, dict[str, Any]] = {
        "int64": {"type": "integer"},
        # JSON has no NaN: a non-finite output is written as null.
        "float64": {"type": ["number", "null"]},
        "bool": {"type": "boolean"},
        "datetime": {"type": "string", "format": "date-time"},
    }
    kind = types.get(field.dtype, {"type": "string"})
    if field.nullable:
        kind = {"anyOf": [kind, {"type": "null"}]}
    return kind


def document_auth(document: dict[str, Any], needs_key: Callable[[str, str], bool]) -> None:
    """Add the bearer-key scheme to ``document``, and to each operation that needs a key
    (``needs_key(method, path)``) its ``security`` and 401/403/429 answers."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a key from 'modelyard keys create', as 'Authorization: Bearer KEY'",
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not needs_key(method.upper(), path):
                continue
            operation["security"] = [{"apiKey": []}]
            answers = operation.setdefault("responses", {})
            for status in (401, 403, 429):
                answers.setdefault(str(status), error_response(_WHY[status]))


# -- GET and POST /v1/features/{service} ---------------------------------------------------
FEATURES_DESCRIPTION = (
    "The service's features for each entity, read from the online store: the same "
    "values as `ws.features.get_online(service, entities)`. `features` names the columns "
    "(join keys first); `results` has one entry per name, each with one value, status "
    "(present, missing, expired) and event time per entity."
)
_FEATURE_COLUMN = {
    "type": "object",
    "required": ["values", "statuses", "event_timestamps"],
    "properties": {
        "values": {"type": "array"},
        "statuses": {"type": "array", "items": {"enum": ["present", "missing", "expired"]}},
        "event_timestamps": {
            "type": "array",
            "items": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        },
    },
}
_FEATURES_ANSWER = {
    "type": "object",
    "required": ["service", "version", "features", "results", "request_id"],
    "properties": {
        "service": {"type": "string"},
        "version": {"type": "integer"},
        "features": {"type": "array", "items": {"type": "string"}},
        "results": {"type": "array", "items": _FEATURE_COLUMN},
        "request_id": {"type": "string"},
    },
}
_FEATURES_ERRORS = {
    "403": error_response(
        "the key's role does not cover feature lookups, or none of its models reads this service"
    ),
    "404": error_response("no such feature service (the message names the nearest one)"),
    "413": error_response("more entities, or a larger body, than this server takes"),
    "422": error_response(
        "a join key is missing, unknown, or has a value of the wrong type (one entry per "
        "bad value), or there are no entities"
    ),
    "500": error_response("the lookup failed; the error is logged with the request_id"),
    "503": error_response("the online store (or the metadata store) is unavailable; retry"),
}


_FEATURE_SERVICE = {
    "name": "service",
    "in": "path",
    "required": True,
    "description": "the feature service's name ('modelyard features list')",
    "schema": {"type": "string"},
}


def features_operation(method: str) -> dict[str, Any]:
    """``openapi_extra`` of ``GET`` or ``POST /v1/features/{service}`` (``_features_route``)."""
    return _features_get() if method == "GET" else _features_post()


def _features_responses() -> dict[str, Any]:
    return {
        "200": json_ok("one result per join key and feature", _FEATURES_ANSWER),
        **_FEATURES_ERRORS,
    }


def _features_get() -> dict[str, Any]:
    keys = {
        "name": "keys",
        "in": "query",
        "description": "each join key, repeated once per entity: ?user_id=1&user_id=2; "
        "and full_feature_names=true for view__feature names",
        "style": "form",
        "explode": True,
        "schema": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "parameters": [_FEATURE_SERVICE, keys],
        "responses": _features_responses(),
    }


def _features_post() -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["entities"],
        "additionalProperties": False,
        "properties": {
            "entities": {
                "oneOf": [
                    {
                        "type": "object",
                        "description": "key columns: one list of values per join key",
                        "minProperties": 1,
                        "additionalProperties": {"type": "array"},
                    },
                    {
                        "type": "array",
                        "description": "one object of join keys per entity",
                        "minItems": 1,
                        "items": {"type": "object"},
                    },
                ]
            },
            "full_feature_names": {"type": "boolean", "default": False},
        },
    }
    return {
        "parameters": [_FEATURE_SERVICE],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": body,
                    "example": {"entities": {"user_id": [1, 2, 3]}},
                }
            },
        },
        "responses": _features_responses(),
    }
