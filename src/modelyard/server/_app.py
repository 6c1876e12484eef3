"""The team server's app: the endpoint table as routes, each answered in a worker thread.

Routes are added to FastAPI without its request models (``add_route``): MLflow's bodies
are free-form protobuf JSON, checked by each handler as it reads them, and skipping the
model layer keeps a log-batch call to the cost of its SQL. Every error is MLflow's shape
with the request id; an ``/api/`` path the table lacks is ``ENDPOINT_NOT_FOUND`` (404).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelyard._redact import redact
from modelyard.errors import BackendUnavailableError, ModelyardError, NotFoundError
from modelyard.server import (  # noqa: F401 - importing them fills the endpoint table
    _artifacts,
    _experiments,
    _logged_models,
    _model_registry,
    _model_versions,
    _own_api,
    _run_records,
    _run_search,
    _runs,
)
from modelyard.server._endpoints import (
    ARTIFACTS,
    ENDPOINTS,
    Args,
    Call,
    Endpoint,
    Stores,
    sweep_scratch,
)
from modelyard.server._errors import MlflowError, as_mlflow
from modelyard.server._guard import Guard

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modelyard.workspace import Workspace

logger = logging.getLogger("modelyard.server")
_BODY_METHODS = ("POST", "PATCH", "DELETE", "PUT")


def _database_failed(exc: DBAPIError, request_id: str) -> ModelyardError:
    """A database error as an answer: 503 when the database refused or dropped the
    connection (clients retry that), else a 500 whose details go to the log."""
    if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
        reason = redact(str(exc.orig or exc).strip().splitlines()[0])[:200]
        logger.warning("metadata database unavailable: %s", reason)
        return BackendUnavailableError(
            f"the metadata database is unavailable ({reason}); try again shortly"
        )
    logger.exception("request %s failed", request_id)
    return _internal(request_id)


def _gone(request: Request, request_id: str) -> Response:
    """The client went away mid-body (killed, timed out): nothing was stored; no one
    reads the answer, so one log line is all it needs."""
    logger.info(
        "request %s: %s %s: the client disconnected before sending its body",
        request_id,
        request.method,
        request.url.path,
    )
    return Response(status_code=400)


def _internal(request_id: str) -> ModelyardError:
    return ModelyardError(
        f"the server failed on this request; its log has the details under request id {request_id}"
    )


def _error(exc: MlflowError, request_id: str) -> Response:
    body = {"error_code": exc.code, "message": exc.message, "request_id": request_id}
    return Response(
        orjson.dumps(body),
        status_code=exc.status,
        media_type="application/json",
        headers={"x-request-id": request_id},
    )


async def _arguments(request: Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in values:
            old = values[key]
            values[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            values[key] = value
    for key in ("experiment_ids", "order_by"):  # lists even when sent once in a query
        if key in values and not isinstance(values[key], list):
            values[key] = [values[key]]
    if request.method in _BODY_METHODS:
        body = await request.body()
        if body.strip():
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise MlflowError("BAD_REQUEST", f"the request body is not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise MlflowError("BAD_REQUEST", "the request body must be a JSON object")
            values.update(data)
    values.update(request.path_params)
    return values


Answer = Callable[[Request], Awaitable[Response]]


def _guarded(
    guard: Guard, permission: Any, work: Callable[[Request, Any], Awaitable[Response]]
) -> Answer:
    async def answer(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            what = f"{request.method} {request.url.path}"
            key = await guard.check(request.headers.get("authorization"), permission, what)
            response = await work(request, key)
        except MlflowError as exc:
            return _error(exc, request_id)
        except ModelyardError as exc:
            return _error(as_mlflow(exc), request_id)
        except DBAPIError as exc:
            return _error(as_mlflow(_database_failed(exc, request_id)), request_id)
        except ClientDisconnect:
            return _gone(request, request_id)
        except Exception:
            logger.exception("request %s failed", request_id)
            return _error(as_mlflow(_internal(request_id)), request_id)
        response.headers["x-request-id"] = request_id
        return response

    return answer


def _own_error(exc: ModelyardError, request_id: str) -> Response:
    body = {**exc.to_dict(), "type": type(exc).__name__, "request_id": request_id}
    return Response(
        orjson.dumps(body),
        status_code=exc.status,
        media_type="application/json",
        headers={"x-request-id": request_id},
    )


def _own_route(
    guard: Guard, permission: Any, work: Callable[[Request, Any], Awaitable[Response]]
) -> Answer:
    """modelyard's own API: the same guard, errors in modelyard's shape (code, message,
    request_id, and the exception's type for the client to raise)."""

    async def answer(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            needed = permission(request) if callable(permission) else permission
            what = f"{request.method} {request.url.path}"
            key = await guard.check(request.headers.get("authorization"), needed, what)
            response = await work(request, key)
        except ModelyardError as exc:
            return _own_error(exc, request_id)
        except DBAPIError as exc:
            return _own_error(_database_failed(exc, request_id), request_id)
        except ClientDisconnect:
            return _gone(request, request_id)
        except Exception:
            logger.exception("request %s failed", request_id)
            return _own_error(_internal(request_id), request_id)
        response.headers["x-request-id"] = request_id
        return response

    return answer


def _mount_own_api(app: FastAPI, stores: Stores, guard: Guard) -> None:
    objects = _own_api.targets(stores)

    def needed(request: Request) -> str:
        found = _own_api.permission_of(request.path_params["target"], request.path_params["method"])
        if found is None:
            raise NotFoundError(
                f"{request.path_params['target']}.{request.path_params['method']} is not a call "
                "this server takes; the client and server versions may differ"
            )
        return found

    async def call(request: Request, key: Any) -> Response:
        body = await request.body()
        p = request.path_params
        result = await run_in_threadpool(
            _own_api.call, objects, p["target"], p["method"], body, key
        )
        return Response(result, media_type="application/json")

    async def head(request: Request, key: Any) -> Response:
        return await _own_api.has_blob(stores, request.path_params["digest"])

    async def get(request: Request, key: Any) -> Response:
        return await _own_api.get_blob(stores, request.path_params["digest"])

    async def put(request: Request, key: Any) -> Response:
        return await _own_api.put_blob(stores, request.path_params["digest"], request)

    api = _own_api.API
    app.add_route(
        f"{api}/call/{{target}}/{{method}}", _own_route(guard, needed, call), methods=["POST"]
    )
    blob = f"{api}/artifacts/{{digest}}"
    app.add_route(blob, _own_route(guard, "read", head), methods=["HEAD"])
    app.add_route(blob, _own_route(guard, "read", get), methods=["GET"])
    app.add_route(blob, _own_route(guard, "track", put), methods=["PUT"])


def _json_route(stores: Stores, guard: Guard, ep: Endpoint) -> Answer:
    async def work(request: Request, key: Any) -> Response:
        args = Args(await _arguments(request))
        result = await run_in_threadpool(ep.handler, Call(stores, args, key))
        return Response(orjson.dumps(result), media_type="application/json")

    return _guarded(guard, ep.permission, work)


def _not_found(request: Request) -> Response:
    return _error(
        MlflowError(
            "ENDPOINT_NOT_FOUND",
            f"{request.method} {request.url.path} is not an endpoint of this server; "
            "see the README's list of the MLflow API it implements",
        ),
        request.headers.get("x-request-id") or uuid.uuid4().hex,
    )


def create_server_app(ws: Workspace, *, auth: bool) -> FastAPI:
    from fastapi import FastAPI

    stores = Stores(ws.metadata, ws.artifacts, ws.registry, ws.state_dir / "staging")
    sweep_scratch(stores.scratch)
    _experiments.ensure_default(stores.metadata)
    guard = Guard(stores.metadata, auth=auth)
    app = FastAPI(title="modelyard server", docs_url=None, redoc_url=None, openapi_url=None)
    for ep in ENDPOINTS:
        app.add_route(ep.path, _json_route(stores, guard, ep), methods=[ep.method])

    async def get_file(request: Request, key: Any) -> Response:
        return await _artifacts.download(stores, request.path_params["path"])

    async def put_file(request: Request, key: Any) -> Response:
        return await _artifacts.upload(stores, request.path_params["path"], request)

    async def delete_file(request: Request, key: Any) -> Response:
        result = await run_in_threadpool(_artifacts.delete, stores, request.path_params["path"])
        return Response(orjson.dumps(result), media_type="application/json")

    _mount_own_api(app, stores, guard)
    path = f"{ARTIFACTS}/{{path:path}}"
    app.add_route(path, _guarded(guard, "read", get_file), methods=["GET"])
    app.add_route(path, _guarded(guard, "track", put_file), methods=["PUT"])
    app.add_route(path, _guarded(guard, "track", delete_file), methods=["DELETE"])

    async def server_info(request: Request) -> Response:
        info = {
            "store_type": "SqlStore",
            "workspaces_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
        }
        return Response(orjson.dumps(info), media_type="application/json")

    app.add_route("/api/3.0/mlflow/server-info", server_info, methods=["GET"])

    def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def ready(request: Request) -> Response:
        def probe() -> None:
            with stores.metadata.read() as conn:
                conn.exec_driver_sql("SELECT 1")

        try:
            await run_in_threadpool(probe)
        except Exception as exc:  # public: no host or database name in the answer
            reason = redact(str(exc).splitlines()[0][:300])
            logger.warning("readiness: the metadata store is unreachable: %s", reason)
            body = {"status": "unavailable", "message": "the metadata store is unreachable"}
            return Response(orjson.dumps(body), status_code=503, media_type="application/json")
        return Response(b'{"status":"ready"}', media_type="application/json")

    app.add_route("/healthz", health, methods=["GET"])
    app.add_route("/health", health, methods=["GET"])  # MLflow's own probe path
    app.add_route("/readyz", ready, methods=["GET"])
    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    app.add_route("/{rest:path}", _not_found, methods=every)  # last: after every route
    return app
