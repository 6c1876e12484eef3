"""``GET|POST /v1/features/{service}``: a feature service's online values, over HTTP.

The same values as ``ws.features.get_online(service, entity_rows)``, in a layout Feast
users know: ``features`` names the columns (join keys first), ``results`` holds one
entry per name with a value, a status (``present``, ``missing``, ``expired``) and an
event time per entity::

    POST /v1/features/driver_stats  {"entities": {"driver_id": [1, 2]}}
    GET  /v1/features/driver_stats?driver_id=1&driver_id=2
    -> {"service": "driver_stats", "version": 3, "features": ["driver_id", "rating"],
        "results": [{"values": [1, 2], "statuses": ["present", "present"],
                     "event_timestamps": [null, null]},
                    {"values": [4.5, null], "statuses": ["present", "missing"],
                     "event_timestamps": ["2024-01-01T00:00:00Z", null]}],
        "request_id": "..."}

Answered by the fast path (``_fast.py``) like predictions: FastAPI declares the routes
for /docs only. The online read runs in a few threads of its own, never on the event
loop; a store that is down or hangs is a 503 ``online_store_unavailable`` at once while
its breaker is open (``_breaker.py``). The key checks of ``_auth.py`` run first; a key
limited to some models may read only the services those models are bound to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram

from modelyard.errors import (
    BackendUnavailableError,
    ForbiddenError,
    InvalidInputError,
    ModelyardError,
    OnlineStoreUnavailableError,
)
from modelyard.serving._auth import Guard, request_key
from modelyard.serving._breaker import Breaker
from modelyard.serving._fast import AsgiEndpoint, Call, ClientGone, Handler, Reply
from modelyard.serving._feature_keys import checked_columns, invalid, parse_body, parse_query
from modelyard.serving._feature_services import FeatureServices, Resolved
from modelyard.serving._logging import info_line
from modelyard.serving._metrics import ServerMetrics
from modelyard.serving._openapi import FEATURES_DESCRIPTION, features_operation
from modelyard.serving._predict import error_reply

if TYPE_CHECKING:
    from modelyard.features import FeatureStore, OnlineFeatures
    from modelyard.registry import Registry

logger = logging.getLogger("modelyard.serving")

PREFIX = "/v1/features/"
READ_THREADS = 4
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z
UNKNOWN_SERVICE = "_unknown"  # the metric label of a name no service has


class FeatureRoute:
    """The handler of both routes, its reader threads, breaker and metrics."""

    def __init__(
        self,
        services: FeatureServices,
        metrics: ServerMetrics,
        guard: Guard,
        *,
        max_body_bytes: int,
        max_entities: int,
    ) -> None:
        self.services = services
        self.guard = guard
        self.max_body_bytes = max_body_bytes
        self.max_entities = max_entities
        self.breaker = Breaker("online store", model="")
        self._threads: ThreadPoolExecutor | None = None
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "modelyard_feature_requests",
            "Feature lookups (GET/POST /v1/features/SERVICE) by service and HTTP status code.",
            ["service", "code"],
            registry=metrics.registry,
        )
        self.latency = Histogram(
            "modelyard_feature_request_latency_seconds",
            "Time from a feature lookup received to its answer ready (answered lookups).",
            ["service"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=metrics.registry,
        )

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The fast path's router: (handler, params) for a feature request, else None."""
        if not path.startswith(PREFIX) or method not in ("GET", "POST"):
            return None
        service = path[len(PREFIX) :]
        if not service or "/" in service:
            return None
        return self.handle, {"service": service}

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    async def handle(self, call: Call, params: dict[str, str]) -> Reply:
        started = time.perf_counter()
        service = params["service"]
        rid = call.request_id
        status, version, count = 200, None, 0
        try:
            await self._check_key(call, service)
            if call.scope["method"] == "POST":
                columns, full = parse_body(await call.body(self.max_body_bytes))
            else:
                columns, full = parse_query(call.scope.get("query_string", b""))
            resolved = await self.services.get(service, full)
            version = resolved.version
            keys, count = checked_columns(
                columns,
                resolved.keys,
                service,
                self.max_entities,
                text=call.scope["method"] != "POST",
            )
            found = await self._read(resolved, keys)
            return Reply(200, _answer(resolved, keys, count, found, rid), rid)
        except ClientGone:
            status = ClientGone.status
            return Reply(status, b"", rid)
        except ModelyardError as exc:
            status = exc.status
            return error_reply(exc, rid)
        except Exception:
            status = 500
            logger.exception("feature lookup failed", extra={"service": service, "request_id": rid})
            return _failed(service, rid)
        finally:
            self._done(service, version, count, status, rid, started)

    async def _check_key(self, call: Call, service: str) -> None:
        """A key limited to some models reads only the services one of them is bound to."""
        key = request_key(call.scope)
        if key is None or key.role == "admin" or key.models is None:
            return
        if await self.services.bound_to_any(key.models, service):
            return
        exc = ForbiddenError(
            f"{key.describe()} may use models {', '.join(key.models)} only, and no version of "
            f"them reads feature service '{service}'; use a key for a model bound to it",
            "wrong_model",
        )
        self.guard.refused(exc, "http")
        raise exc

    async def _read(self, resolved: Resolved, keys: dict[str, list[Any]]) -> OnlineFeatures:
        if not self.breaker.allow():
            raise self._unavailable(resolved.service)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(READ_THREADS, "modelyard-features")
        loop = asyncio.get_running_loop()
        try:
            found: OnlineFeatures = await loop.run_in_executor(
                self._threads, resolved.reader.read, keys
            )
        except BackendUnavailableError as exc:
            self.breaker.failed(exc.message)
            raise self._unavailable(resolved.service) from None
        except InvalidInputError as exc:  # what the reader's own key checks refuse
            self.breaker.abandoned()
            raise invalid("entities", exc.message) from None
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()
        return found

    def _unavailable(self, service: str) -> OnlineStoreUnavailableError:
        return OnlineStoreUnavailableError(
            f"feature service '{service}' is read from the online store, which is unavailable "
            f"({self.breaker.error}); retry shortly"
        )

    def _done(
        self, service: str, version: int | None, count: int, status: int, rid: str, started: float
    ) -> None:
        elapsed = time.perf_counter() - started
        label = service if self.services.known(service) else UNKNOWN_SERVICE
        requests, latency = self._metrics_of(label, status)
        requests.inc()
        if latency is not None:
            latency.observe(elapsed)
        if logger.isEnabledFor(logging.INFO):  # a 500 is also logged where it happened
            fields = {
                "service": service,
                "version": version,
                "entities": count,
                "request_id": rid,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
            }
            info_line(logger, "features", fields)

    def _metrics_of(self, label: str, status: int) -> tuple[Any, Any]:
        # Looked up once per label set (``labels()`` takes a lock and builds a key).
        found = self._series.get((label, status))
        if found is None:
            latency = self.latency.labels(label) if status == 200 else None
            found = (self.requests.labels(label, str(status)), latency)
            self._series[(label, status)] = found
        return found


def _answer(
    resolved: Resolved, keys: dict[str, list[Any]], count: int, found: OnlineFeatures, rid: str
) -> bytes:
    # The features of one view share one list of statuses and one of event times: each
    # is written once (a third of the answer's cost, for 10 features of a view, without).
    written: dict[int, orjson.Fragment] = {}

    def once(values: list[Any]) -> orjson.Fragment:
        fragment = written.get(id(values))
        if fragment is None:
            fragment = written[id(values)] = orjson.Fragment(
                orjson.dumps(values, option=_JSON_OPTIONS)
            )
        return fragment

    present: list[Any] = ["present"] * count  # kept alive: ``written`` is keyed by id
    nothing: list[Any] = [None] * count
    results: list[dict[str, Any]] = [
        {"values": keys[k.name], "statuses": once(present), "event_timestamps": once(nothing)}
        for k in resolved.keys
    ]
    for name in found.names:
        results.append(
            {
                "values": found.values[name],
                "statuses": once(found.status[name]),
                "event_timestamps": once(found.event_times[name]),
            }
        )
    payload = {
        "service": resolved.service,
        "version": resolved.version,
        "features": [*(k.name for k in resolved.keys), *found.names],
        "results": results,
        "request_id": rid,
    }
    return orjson.dumps(payload, option=_JSON_OPTIONS)


def _failed(service: str, rid: str) -> Reply:
    message = (
        f"the lookup of feature service '{service}' failed; the error is logged with this "
        "request_id"
    )
    body = {"code": "features_failed", "message": message, "request_id": rid}
    return Reply(500, orjson.dumps(body), rid)


def add_feature_routes(
    app: FastAPI,
    store: FeatureStore,
    registry: Registry,
    metrics: ServerMetrics,
    guard: Guard,
    *,
    recheck_s: float,
) -> FeatureRoute:
    """Declare both routes on ``app`` (for /docs); the fast path answers them."""
    route = FeatureRoute(
        FeatureServices(store, registry, recheck_s=recheck_s),
        metrics,
        guard,
        max_body_bytes=app.state.max_body_bytes,
        max_entities=app.state.max_batch_rows,
    )

    async def lookup(request: Request) -> Response:
        # The fast path answers first; the same handler runs for a caller that reaches
        # the FastAPI route itself. The path parameter is read, not declared: FastAPI would
        # add its own 422 shape to the document, which this route never answers.
        service = request.path_params["service"]
        return AsgiEndpoint(route.handle, {"service": service}, app.state.body_timeout_s)

    for method in ("GET", "POST"):
        app.add_api_route(
            PREFIX + "{service}",
            lookup,
            methods=[method],
            tags=["features"],
            name=f"features_{method.lower()}",
            summary=f"Online features of a feature service ({method})",
            description=FEATURES_DESCRIPTION,
            openapi_extra=features_operation(method),
        )
    return route
