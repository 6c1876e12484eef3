"""The model server: FastAPI on uvicorn, one predict route per model, built from signatures.

The prediction routes (``/v1/models/NAME/predict``, OIP's ``/v2/.../infer``) and, with
a feature store, the feature lookups (``/v1/features/SERVICE``, ``_features_route.py``)
and the recommendation reads (``/v1/recommendations/USER``, ``_recommendations_route.py``)
are answered as plain ASGI before FastAPI's router (``_fast.py``, ``_predict.py``); every
other route is FastAPI's, and all of them are in /docs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.backends.predictions import PredictionLog
from modelyard.errors import ConfigError, FieldError, ModelyardError, SchemaValidationError
from modelyard.registry import Registry
from modelyard.security import KeyRing
from modelyard.serving import _http
from modelyard.serving._admission import prediction_path
from modelyard.serving._auth import Guard, needs_key
from modelyard.serving._fast import AsgiEndpoint, Handler, Router, install
from modelyard.serving._features_route import FeatureRoute, add_feature_routes
from modelyard.serving._feedback import add_feedback_route
from modelyard.serving._health import Readiness, server_readiness
from modelyard.serving._http import error_json, json_response, request_id
from modelyard.serving._limits import (
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_STRING_LENGTH,
    check_request_limits,
)
from modelyard.serving._metrics import CONTENT_TYPE
from modelyard.serving._monitor_gauges import MonitorGauges, served_versions
from modelyard.serving._oip import add_oip_routes, oip_error
from modelyard.serving._openapi import document_auth, errors, json_ok, predict_operation
from modelyard.serving._options import ServeOptions
from modelyard.serving._pool import ModelPool
from modelyard.serving._predict import predict_handler, refusal_handler
from modelyard.serving._protocol import DEFAULT_MAX_CONNECTIONS
from modelyard.serving._recommendations_route import (
    RecommendationRoute,
    add_recommendation_route,
    routes,
)
from modelyard.serving._request_ids import ids_of
from modelyard.serving._slot import Servable

if TYPE_CHECKING:
    from modelyard.features import FeatureStore

logger = logging.getLogger("modelyard.serving")

DEFAULT_MAX_BODY = 10 * 1024 * 1024


def create_app(
    registry: Registry,
    models: Sequence[str | ServeOptions],
    *,
    features: FeatureStore | None = None,
    poll_interval_s: float = 1.0,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    body_timeout_s: float | None = None,
    threads: int = 2,
    grpc_port: int | None = None,
    grpc_host: str = "127.0.0.1",
    prediction_log: PredictionLog | None = None,
    max_rpcs: int = DEFAULT_MAX_CONNECTIONS,
    auth: bool = False,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    grpc_tls: tuple[str, str] | None = None,
    require_safe_formats: bool = False,
    extend: Sequence[Callable[[FastAPI], None]] = (),
) -> FastAPI:
    """An app serving ``models`` (``name@alias``, ``name/version`` or ``ServeOptions``).

    Every model is loaded before this returns, so a bad reference fails at once.
    The server follows each alias every ``poll_interval_s`` (0 turns it off).
    ``grpc_port`` also starts the Open Inference Protocol gRPC service on that port, which
    answers ``max_rpcs`` calls at once (more are refused with RESOURCE_EXHAUSTED).
    ``prediction_log`` records every answered prediction before its answer leaves.
    ``threads`` is each variant's own thread budget (a slow candidate cannot take the
    champion's); a body that has not arrived ``body_timeout_s`` after its headers is 408.
    ``auth`` requires an API key with the right role on every route but the health checks
    (``serving/_auth.py``); the keys are read now and again every ``poll_interval_s``.
    A prediction with more than ``max_batch_rows`` rows is 413, a string value longer than
    ``max_string_length`` characters 422 (``_limits.py``). ``grpc_tls`` (certificate and
    key paths, checked by ``_tls.check_tls``) serves gRPC over TLS. ``require_safe_formats``
    refuses to load a version whose flavor unpickles a file (now, and when an alias moves).
    Each of ``extend`` adds its routes to the app before it is sealed (``modelyard serve``
    mounts the dashboard so); the routes need rules in ``_auth.RULES`` like any other.
    With ``features`` the app also answers ``GET|POST /v1/features/SERVICE`` (online
    features by entity keys, ``_features_route.py``; definitions are checked for a new
    version every ``poll_interval_s``); with no ``models`` it is a feature server, whose
    /readyz requires the online store.
    """
    check_request_limits(max_batch_rows, max_string_length)
    if require_safe_formats:
        registry = registry.refusing_pickles()
    options = [m if isinstance(m, ServeOptions) else ServeOptions(ref=m) for m in models]
    readers = None if features is None else features.online_reader
    pool = ModelPool(
        registry,
        options,
        readers=readers,
        threads=threads,
        poll_interval_s=poll_interval_s,
        log=prediction_log,
    )
    pool.load()
    # Through a team server (registry.direct False) the monitoring results and the API keys
    # stay on the server: no monitor gauges here, and keys only where the database is.
    metadata = registry.metadata if registry.direct else None
    gauges = None
    if metadata is not None:
        gauges = MonitorGauges(metadata, lambda: served_versions(pool))
        pool.metrics.register(gauges)
    ring = None
    if auth:
        if metadata is None:
            raise ConfigError(
                "a server that checks API keys reads them from the metadata database, and "
                "this workspace reaches a team server instead; serve on loopback (no keys) "
                "or where metadata.url names the database"
            )
        ring = KeyRing(metadata)
        ring.refresh()
    guard = Guard(ring, pool.metrics, poll_interval_s if poll_interval_s > 0 else 1.0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.start()
        follow_keys = asyncio.get_running_loop().create_task(guard.follow_keys())
        grpc_server = None
        if grpc_port is not None:
            from modelyard.serving._grpc import start_grpc

            grpc_server = await start_grpc(
                pool,
                grpc_host,
                grpc_port,
                max_body_bytes,
                lambda: bool(app.state.ready),
                app.state.readiness,
                ids_of(app),
                max_rpcs,
                guard,
                tls=grpc_tls,
                max_rows=max_batch_rows,
                max_string_length=max_string_length,
            )
        warming = None
        if feature_route is not None and not options:  # a feature server: resolve at once
            warming = asyncio.get_running_loop().create_task(feature_route.services.warm())
        app.state.ready = True
        yield
        app.state.ready = False
        if warming is not None:
            warming.cancel()
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        follow_keys.cancel()
        await pool.stop()
        if feature_route is not None:
            feature_route.close()
        if recommendation_route is not None:
            recommendation_route.close()

    # /docs and /redoc load Swagger UI and ReDoc from this server (fastapi-offline ships
    # them), so the docs work on a machine without internet.
    app = FastAPIOffline(
        title="modelyard model server",
        description="Predictions from registered models; request bodies follow each signature.",
        lifespan=lifespan,
        static_url="/docs/static",
    )
    app.state.ready = False
    app.state.pool = pool
    app.state.monitor_gauges = gauges
    app.state.max_body_bytes = max_body_bytes
    app.state.max_batch_rows = max_batch_rows
    app.state.max_string_length = max_string_length
    # None: this process's --body-timeout (serve() sets it before building the app).
    app.state.body_timeout_s = _http.body_timeout_s() if body_timeout_s is None else body_timeout_s
    app.state.readiness = server_readiness(pool, metadata, features)

    @app.exception_handler(ModelyardError)
    async def _modelyard_error(request: Request, exc: ModelyardError) -> Response:
        if request.url.path.startswith("/v2"):
            return oip_error(request, exc)
        return error_json(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        rid = request_id(request)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path}; see /docs for the API"
        body = {"code": code, "message": message, "request_id": rid}
        return json_response(body, exc.status_code, rid)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        # Our one error shape for the few routes with declared parameters, too.
        fields = [
            FieldError(".".join(str(p) for p in e["loc"]), str(e["msg"])) for e in exc.errors()
        ]
        return await _modelyard_error(request, SchemaValidationError(fields, what="request"))

    _health_routes(app, pool)
    predict = _model_routes(app, pool)
    infer = add_oip_routes(app, pool)
    if prediction_log is not None:
        add_feedback_route(app, pool)
    feature_route: FeatureRoute | None = None
    recommendation_route: RecommendationRoute | None = None
    if features is not None:
        feature_route = add_feature_routes(
            app, features, registry, pool.metrics, guard, recheck_s=poll_interval_s
        )
        recommendation_route = add_recommendation_route(app, features, pool.metrics, guard)
        if not options:
            _online_store_required(app.state.readiness)
    app.state.guard = guard
    for add in extend:
        add(app)
    install(
        app,
        fast_router(predict, infer),
        app.state.body_timeout_s,
        pool.admission,
        refusal_handler(pool),
        guard,
        routes(None if feature_route is None else feature_route.route, recommendation_route),
    )
    if auth:
        _document_keys(app)
    return app


def _online_store_required(readiness: Readiness) -> None:
    """A feature server answers nothing without its online store: /readyz says so."""
    for check in readiness.checks:
        if check.name == "online_store":
            check.applies = check.required = lambda: True


def _document_keys(app: FastAPI) -> None:
    """/openapi.json (and /docs' Authorize button) says which routes need a key."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_auth(plain(), needs_key)  # plain() caches the document it returns
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _health_routes(app: FastAPI, pool: ModelPool) -> None:
    @app.get("/healthz", tags=["health"], responses={200: json_ok("the process is alive")})
    async def healthz() -> Response:
        """The process is alive."""
        return json_response({"status": "ok"})

    readiness = {
        "type": "object",
        "required": ["status", "models"],
        "properties": {
            "status": {"enum": ["ready", "degraded", "starting"]},
            "models": {"type": "object"},
            "checks": {"type": "object"},  # by name: {"ok", "required", "error"?}
            "prediction_log": {"type": "object"},
        },
    }

    @app.get(
        "/readyz",
        tags=["health"],
        responses={
            200: json_ok("this replica can answer predictions (degraded: see checks)", readiness),
            503: json_ok(
                "not ready: starting, a model failed to load, the prediction log cannot "
                "write, or a back end a served model needs is down",
                readiness,
            ),
        },
    )
    async def readyz() -> Response:
        """This replica can answer predictions: models loaded, the back ends they need up.

        200 ``degraded`` names failing back ends that predictions do not need (see
        ``serving/_health.py``); answers within about two seconds even if one hangs.
        """
        code, body = await app.state.readiness.evaluate(bool(app.state.ready))
        return json_response(body, code)

    @app.get(
        "/metrics",
        tags=["health"],
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        """Prometheus metrics: requests, latency, batching, cache, loads; drift and quality."""
        # Off the event loop: rendering reads the metadata store (and, with --workers,
        # every worker's metric files).
        return Response(await run_in_threadpool(pool.metrics.render), media_type=CONTENT_TYPE)


def _model_routes(app: FastAPI, pool: ModelPool) -> Handler:
    @app.get("/v1/models", tags=["models"], responses={200: json_ok("the served models")})
    async def list_models() -> Response:
        """The models this server answers for, with version, variants and request schema."""
        out = []
        for name, d in pool.deployments.items():
            s = d.served
            out.append(
                {
                    "name": name,
                    "version": s.version,
                    "ref": str(d.ref),
                    "flavor": s.model.version.flavor,
                    "variants": {slot.label: _version_of(slot.current) for slot in d.slots},
                    # How each version is called (timed at load: serving/_calls.py).
                    "calls": {
                        slot.label: slot.current.plan.describe()
                        for slot in d.slots
                        if slot.current is not None
                    },
                    "signature": s.model.version.signature.to_json_dict(),
                    "request": s.request_schema.to_json_dict(),
                }
            )
        return json_response({"models": out})

    @app.post(
        "/v1/models/{name}/rollback",
        tags=["admin"],
        responses={200: json_ok("the version now served"), **errors(400, 404, 409, 415, 503)},
    )
    async def rollback(name: str, request: Request) -> Response:
        """Move the model's alias back one step and serve the kept previous version now."""
        served = await pool.rollback(name)
        logger.info(
            "rollback",
            extra={"model": name, "version": served.version, "request_id": request_id(request)},
        )
        return json_response({"model": name, "version": served.version}, 200, request_id(request))

    predict = predict_handler(
        pool, app.state.max_body_bytes, app.state.max_batch_rows, app.state.max_string_length
    )
    for name, deployment in pool.deployments.items():
        _add_predict_route(app, pool, name, deployment.served, predict)
    return predict


def _version_of(servable: Servable | None) -> int | None:
    return None if servable is None else servable.version


def _add_predict_route(
    app: FastAPI, pool: ModelPool, name: str, served: Servable, handler: Handler
) -> None:
    deployment = pool.deployments[name]

    async def predict(request: Request) -> Response:
        # Answered by the fast path (serving/_fast.py) before FastAPI routes; the same
        # handler runs here for a caller that reaches the FastAPI route itself.
        return AsgiEndpoint(handler, {"name": name}, app.state.body_timeout_s)

    predict.__name__ = f"predict_{name}"
    app.add_api_route(
        f"/v1/models/{name}/predict",
        predict,
        methods=["POST"],
        tags=["models"],
        summary=f"Predict with {name} ({deployment.ref})",
        description=served.model.version.description or f"Predictions from {deployment.ref}.",
        openapi_extra=predict_operation(
            served.model, served.request_schema, pool.registry.input_example(served.model.version)
        ),
    )


def fast_router(predict: Handler, infer: Handler) -> Router:
    """The POST paths the fast path answers: /v1/models/NAME/predict and OIP's infer."""

    def route(path: str) -> tuple[Handler, dict[str, str]] | None:
        found = prediction_path(path)
        if found is None:
            return None
        oip, params = found
        return (infer if oip else predict), params

    return route
