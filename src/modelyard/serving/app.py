"""The model server: FastAPI on uvicorn, one predict route per model, built from signatures.

The predict route reads the raw body and validates it with the signature's compiled
validator (parse and check in one pass) instead of FastAPI's body models: that keeps
a single-row request well under a millisecond and lets errors use our stable JSON
shape (``code``, ``message``, ``request_id``, one entry per bad field).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.errors import ModelyardError, NotFoundError
from modelyard.registry import LoadedModel, ModelRef, Registry
from modelyard.serving._openapi import error_response, predict_operation

logger = logging.getLogger("modelyard.serving")

# Batches up to this many rows run on the event loop: a thread hop costs more than
# predicting them. Bigger batches go to the thread pool so the loop stays responsive.
INLINE_ROWS = 64
_JSON = "application/json"


def request_id(request: Request) -> str:
    """The caller's ``X-Request-ID`` when given, else a new one (stable per request)."""
    rid: str | None = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
    return rid


def _json(payload: Any, status: int = 200, rid: str | None = None) -> Response:
    headers = {"x-request-id": rid} if rid else None
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


def error_json(request: Request, exc: ModelyardError) -> Response:
    rid = request_id(request)
    return _json({**exc.to_dict(), "request_id": rid}, exc.status, rid)


def _records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    names = list(columns)
    values = [v.tolist() if isinstance(v, np.ndarray) else list(v) for v in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def create_app(registry: Registry, refs: Sequence[str]) -> FastAPI:
    """An app serving ``refs`` (``name@alias`` or ``name/version``), loaded on startup."""
    parsed = [ModelRef.parse(r) for r in refs]
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        raise ModelyardError(f"a model is named twice in {list(refs)}; serve each name once")
    # Resolve and load before the app exists: a bad reference fails the command at once.
    models: dict[str, LoadedModel] = {}
    for ref in parsed:
        started = time.perf_counter()
        models[ref.name] = registry.load(ref)
        logger.info(
            "model loaded",
            extra={
                "model": ref.name,
                "version": models[ref.name].number,
                "ref": str(ref),
                "load_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        app.state.ready = True
        yield
        app.state.ready = False

    app = FastAPI(
        title="modelyard model server",
        description="Predictions from registered models; request bodies follow each signature.",
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.models = models

    @app.exception_handler(ModelyardError)
    async def _modelyard_error(request: Request, exc: ModelyardError) -> Response:
        return error_json(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        rid = request_id(request)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path}; see /docs for the API"
        return _json({"code": code, "message": message, "request_id": rid}, exc.status_code, rid)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """The process is alive."""
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        """Every model is loaded and the server accepts traffic."""
        ready = bool(app.state.ready)
        body = {
            "status": "ready" if ready else "starting",
            "models": {n: {"version": m.number, "ready": ready} for n, m in models.items()},
        }
        return _json(body, 200 if ready else 503)

    @app.get("/v1/models", tags=["models"])
    async def list_models() -> Response:
        """The models this server answers for, with version and signature."""
        return _json(
            {
                "models": [
                    {
                        "name": n,
                        "version": m.number,
                        "flavor": m.version.flavor,
                        "signature": m.version.signature.to_json_dict(),
                    }
                    for n, m in models.items()
                ]
            }
        )

    for name, model in models.items():
        _add_predict_route(app, name, model)

    @app.post(
        "/v1/models/{name}/predict",
        tags=["models"],
        include_in_schema=False,
        responses={404: error_response("no such model on this server")},
    )
    async def predict_unknown(name: str, request: Request) -> Response:
        served = ", ".join(models) or "none"
        raise NotFoundError(f"model '{name}' is not served here (serving: {served})")

    return app


def _add_predict_route(app: FastAPI, name: str, model: LoadedModel) -> None:
    version = model.number

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        rid = request_id(request)
        status = 200
        try:
            columns, many = model.validator.validate_json(await request.body())
            rows = len(next(iter(columns.values()))) if columns else 0
            if rows > INLINE_ROWS:
                outputs = await run_in_threadpool(model.predict_columns, columns)
            else:
                outputs = model.predict_columns(columns)
            records = _records(outputs)
            payload: dict[str, Any] = {"model": name, "version": version, "request_id": rid}
            if many:
                payload["predictions"] = records
            else:
                payload["prediction"] = records[0]
            return _json(payload, 200, rid)
        except ModelyardError as exc:
            status = exc.status
            return error_json(request, exc)
        except Exception:
            status = 500
            logger.exception(
                "prediction failed",
                extra={"model": name, "version": version, "request_id": rid},
            )
            failure = {
                "code": "prediction_failed",
                "message": f"model '{name}' version {version} failed on this input; "
                "the error is logged with this request_id",
                "request_id": rid,
            }
            return _json(failure, 500, rid)
        finally:
            logger.info(
                "predict",
                extra={
                    "model": name,
                    "version": version,
                    "request_id": rid,
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    predict.__name__ = f"predict_{name}"
    app.add_api_route(
        f"/v1/models/{name}/predict",
        predict,
        methods=["POST"],
        tags=["models"],
        summary=f"Predict with {name} (version {version})",
        description=model.version.description or f"Predictions from {model.version.ref}.",
        openapi_extra=predict_operation(model),
    )
