"""Open Inference Protocol v2 over REST (the KServe / Triton HTTP API).

Supports JSON tensors and the binary tensor extension (``Inference-Header-Content-Length``)
that ``tritonclient.http`` uses by default, for inputs and for outputs.
"""

from __future__ import annotations

import json
import logging
import time
from importlib.metadata import version as package_version
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from modelyard.errors import InvalidInputError, ModelyardError, NotFoundError, OverloadedError
from modelyard.serving._deployment import Deployment, Inference
from modelyard.serving._fast import AsgiEndpoint, Call, ClientGone, Handler, Reply, json_reply
from modelyard.serving._http import json_response, request_id
from modelyard.serving._limits import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_STRING_LENGTH
from modelyard.serving._openapi import PREDICT_ERRORS, errors, json_ok
from modelyard.serving._pool import ModelPool
from modelyard.serving._predict import error_reply, failure_reply
from modelyard.serving._tensors import (
    DATATYPE_OF_FIELD,
    Tensor,
    from_columns,
    from_list,
    from_raw,
    to_columns,
    to_raw,
)

_HEADER_LENGTH = "inference-header-content-length"
_HEADER_LENGTH_KEY = _HEADER_LENGTH.encode()
logger = logging.getLogger("modelyard.serving")


_READY = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string"},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {"type": "array", "items": {"type": "object"}},
        "parameters": {"type": "object"},
    },
}


def model_metadata(d: Deployment) -> dict[str, Any]:
    served = d.served
    sig = served.model.version.signature
    return {
        "name": d.name,
        "versions": [str(s.current.version) for s in d.slots if s.current is not None],
        "platform": f"modelyard_{served.model.version.flavor}",
        "inputs": [
            {"name": f.name, "datatype": DATATYPE_OF_FIELD[f.dtype], "shape": [-1]}
            for f in served.request_schema.fields
        ],
        "outputs": [
            {"name": f.name, "datatype": DATATYPE_OF_FIELD[f.dtype], "shape": [-1]}
            for f in sig.outputs.fields
        ],
    }


def server_metadata() -> dict[str, Any]:
    return {
        "name": "modelyard",
        "version": package_version("modelyard"),
        "extensions": ["binary_tensor_data"],
    }


def check_version(d: Deployment, wanted: str | None) -> None:
    if wanted in (None, ""):
        return
    served = {str(s.current.version) for s in d.slots if s.current is not None}
    if wanted not in served:
        raise NotFoundError(
            f"model '{d.name}' version {wanted} is not served here (serving "
            f"{', '.join(sorted(served))}); leave the version out to use the current one"
        )


def _loads(text: bytes) -> Any:
    """The JSON header; NaN, Infinity and 1e999 are read as floats (as /v1 reads them), so
    the tensor checks refuse them with the field and row, or pass them to a field that
    allows them, instead of a 400 "not valid JSON" (Python's json.dumps writes NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:  # only bodies orjson refused: the standard library reads those non-finite numbers
        return json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInputError(f"body is not valid JSON: {error}") from None


def _parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], list[Tensor]]:
    cut = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInputError(
                f"{_HEADER_LENGTH} is {header_length!r}; it must be the JSON header's byte length"
            )
        cut = int(header_length)
    doc = _loads(body[:cut])
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError(
            'expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}; see /docs'
        )
    for key, kind in (("outputs", list), ("parameters", dict)):
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise InvalidInputError(
                f'"{key}" must be a JSON {kind.__name__.replace("dict", "object")}'
            )
    for out in doc.get("outputs") or []:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise InvalidInputError('every requested output needs a "name"')
        if out.get("parameters") is not None and not isinstance(out["parameters"], dict):
            raise InvalidInputError(f"output '{out['name']}': parameters must be a JSON object")
    tensors: list[Tensor] = []
    offset = cut
    for spec in inputs:
        if not isinstance(spec, dict) or not {"name", "shape", "datatype"} <= set(spec):
            raise InvalidInputError("every input needs name, shape and datatype")
        name = spec["name"]
        shape = spec["shape"]
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise InvalidInputError(
                f"input '{name}': shape must be a list of non-negative integers"
            )
        params = spec.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInputError(f"input '{name}': parameters must be a JSON object")
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise InvalidInputError(
                    f"input '{name}': binary_data_size {size!r} does not fit the body"
                )
            raw = body[offset : offset + size]
            offset += size
            tensors.append(from_raw(spec["name"], spec["datatype"], shape, raw))
        else:
            if "data" not in spec:
                raise InvalidInputError(f"input '{spec['name']}' has no data")
            tensors.append(from_list(spec["name"], spec["datatype"], shape, spec["data"]))
    return doc, tensors


def _respond(doc: dict[str, Any], d: Deployment, result: Inference, rid: str) -> Reply:
    requested = doc.get("outputs") or []
    wanted = [o["name"] for o in requested if isinstance(o, dict) and "name" in o]
    binary = {
        o["name"]
        for o in requested
        if isinstance(o, dict) and (o.get("parameters") or {}).get("binary_data")
    }
    if (doc.get("parameters") or {}).get("binary_data_output"):
        binary = set(result.outputs)
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in from_columns(
        result.outputs, wanted or None, d.served.model.version.signature.outputs
    ):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if tensor.name in binary:
            blob = to_raw(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensor.values.tolist()
        outputs.append(entry)
    payload: dict[str, Any] = {
        "model_name": d.name,
        "model_version": str(result.version),
        "outputs": outputs,
        "parameters": {"variant": result.variant, "request_id": rid},
    }
    if "id" in doc:
        payload["id"] = doc["id"]
    headers = {"x-model-variant": result.variant}
    if not blobs:
        return json_reply(payload, 200, rid, headers)
    head = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    headers[_HEADER_LENGTH] = str(len(head))
    return Reply(200, head + b"".join(blobs), rid, b"application/octet-stream", headers)


def oip_error(request: Request, exc: ModelyardError) -> Response:
    """Our error shape plus ``error``, the field OIP clients (tritonclient) read."""
    rid = request_id(request)
    return json_response(
        {**exc.to_dict(), "error": exc.message, "request_id": rid}, exc.status, rid
    )


def add_oip_routes(app: FastAPI, pool: ModelPool) -> Handler:
    """The OIP v2 routes; returns the infer handler for the fast path."""
    limit: int = app.state.max_body_bytes
    infer = infer_handler(pool, limit, app.state.max_batch_rows, app.state.max_string_length)

    @app.get("/v2", tags=["oip"], responses={200: json_ok("server metadata")})
    async def v2_server() -> Response:
        """Server metadata (OIP v2)."""
        return json_response(server_metadata())

    @app.get("/v2/health/live", tags=["oip"], responses={200: json_ok("the process is alive")})
    async def v2_live() -> Response:
        return json_response({"live": True})

    ready: dict[int | str, dict[str, Any]] = {
        200: json_ok("every model is loaded", _READY),
        503: json_ok("not ready yet, or a model failed to load", _READY),
    }

    @app.get("/v2/health/ready", tags=["oip"], responses=ready)
    async def v2_ready() -> Response:
        code, _ = await app.state.readiness.evaluate(bool(app.state.ready))  # as /readyz
        return json_response({"ready": code == 200}, code)

    metadata = {200: json_ok("the model's inputs, outputs and versions"), **errors(404)}

    @app.get("/v2/models/{name}", tags=["oip"], responses=metadata)
    @app.get("/v2/models/{name}/versions/{version}", tags=["oip"], responses=metadata)
    async def v2_model(name: str, version: str | None = None) -> Response:
        d = pool.get(name)  # errors under /v2 get OIP's "error" field (see app.py)
        check_version(d, version)
        return json_response(model_metadata(d))

    model_ready: dict[int | str, dict[str, Any]] = {
        200: json_ok("the model is loaded"),
        503: json_ok("the model is not loaded yet"),
        **errors(404),
    }

    @app.get("/v2/models/{name}/ready", tags=["oip"], responses=model_ready)
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["oip"], responses=model_ready)
    async def v2_model_ready(name: str, version: str | None = None) -> Response:
        d = pool.get(name)
        check_version(d, version)
        ready = bool(app.state.ready) and d.champion.ready
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    # The hot route takes only the Request: declared path parameters would cost FastAPI's
    # dependency solving on every call (about a fifth of the route's time at c=32).
    infer_doc = {
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _INFER_REQUEST},
                # The binary tensor extension: a JSON header, then the raw tensors.
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    }
    infer_responses: dict[int | str, Any] = {
        200: {
            "description": "the outputs: JSON tensors, or a JSON header followed by binary "
            "tensors when binary_data output was asked for",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **errors(404, *PREDICT_ERRORS),
    }

    @app.post(
        "/v2/models/{name}/infer",
        tags=["oip"],
        openapi_extra=infer_doc,
        responses=infer_responses,
    )
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["oip"], include_in_schema=False)
    async def v2_infer(request: Request) -> Response:
        """Inference over OIP v2 tensors (JSON, or the binary tensor extension)."""
        # Answered by the fast path (serving/_fast.py) before FastAPI routes; the same
        # handler runs here for a caller that reaches the FastAPI route itself.
        return AsgiEndpoint(infer, dict(request.path_params), app.state.body_timeout_s)

    return infer


def infer_handler(
    pool: ModelPool,
    limit: int,
    max_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
) -> Handler:
    """``limit``: the body's bytes; ``max_rows`` and ``max_string_length``: ``_limits.py``."""

    async def infer(call: Call, params: dict[str, str]) -> Reply:
        started = time.perf_counter()
        name = params["name"]
        done = pool.observe(name, "v2")
        status = 200
        shed = False
        result: Inference | None = None
        try:
            d = pool.get(name)
            check_version(d, params.get("version"))
            body = await call.body(limit)
            doc, tensors = _parse_request(body, call.header(_HEADER_LENGTH_KEY))
            # OIP clients name the request with the body's "id"; X-Request-ID still wins.
            given = doc.get("id")
            if isinstance(given, str) and given:
                call.name_request(given)
            served = d.served
            columns, rows = to_columns(
                served.request_schema,
                served.validator,
                tensors,
                max_rows=max_rows,
                max_string_length=max_string_length,
                tensor_inputs=served.tensor_inputs,
            )
            result = await d.infer(columns, rows, call.request_id, call.routed, call.alone())
            return _respond(doc, d, result, call.request_id)
        except ClientGone:
            status = ClientGone.status
            return Reply(status, b"", call.request_id)
        except ModelyardError as exc:
            status, shed = exc.status, isinstance(exc, OverloadedError)
            return error_reply(exc, call.request_id, {"error": exc.message})
        except Exception:
            status = 500
            return failure_reply(name, call.request_id, oip=True)
        finally:
            done(call.request_id, status, result, started, shed)

    return infer
