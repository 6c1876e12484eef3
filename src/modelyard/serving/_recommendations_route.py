"""``GET /v1/recommendations/{user_id}?k=10[&model=NAME]``: a user's published top-N list.

The read side of the recommendations blueprint: the nightly job publishes every user's
list to the online store (``_recommendation_lists.py``), this route reads one user's, as
it is now, from one night only::

    GET /v1/recommendations/5?k=2
    -> {"user_id": 5, "model": "recommender", "night": "2026-12-05", "version": 3,
        "published_at": "2026-12-06T02:14:03.120000Z", "fallback": false,
        "items": [{"item_id": 1, "score": 0.93}, {"item_id": 7, "score": 0.9}],
        "request_id": "..."}

``model`` is the newest published model unless ``?model=NAME`` names one; ``version`` is
the registered version that scored the night (null if the job did not say). ``fallback``
is ``false`` for the user's own list and ``"popularity"`` for a user the night did not
score (new since the job ran, or unknown): the night's popularity list, which every such
user gets. ``k`` defaults to 10, or to the night's k where it kept fewer; a list may hold
fewer than ``k`` items (a user with few unseen items).

Errors are one JSON line, ``{"code", "message", "request_id"}``: 422
``validation_failed`` for a user id or ``k`` that is not an integer, a user id beyond
int64, ``k`` < 1, ``k`` above the items the night kept per user (the message names the
limit) or a query parameter other than ``k`` and ``model``; 404 ``not_found`` when
nothing is published (for that model), saying to run the nightly job; 403 for a key
whose models do not include the lists' model; 503 ``online_store_unavailable`` while the
store is down.

Answered by the fast path (``_fast.py``) like the feature lookups (FastAPI declares the
route for /docs only): two small reads of the online store (the model's pointer, then
the user's row of the night it names) in a few threads of this route, never on the event
loop; while the store is down its breaker (``_breaker.py``) answers 503 at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram

from modelyard.errors import (
    BackendUnavailableError,
    ConfigError,
    FieldError,
    ForbiddenError,
    InvalidInputError,
    ModelyardError,
    OnlineStoreUnavailableError,
    SchemaValidationError,
)
from modelyard.security import ApiKey
from modelyard.serving._auth import Guard, request_key
from modelyard.serving._breaker import Breaker
from modelyard.serving._fast import AsgiEndpoint, Call, Handler, MethodRouter, Reply
from modelyard.serving._logging import info_line
from modelyard.serving._metrics import ServerMetrics
from modelyard.serving._openapi import error_response, json_ok
from modelyard.serving._predict import error_reply
from modelyard.serving._recommendation_lists import INT64, RecommendationLists, Recommendations

if TYPE_CHECKING:
    from modelyard.features import FeatureStore

logger = logging.getLogger("modelyard.serving")

PREFIX = "/v1/recommendations/"
READ_THREADS = 4
UNKNOWN_MODEL = "_unknown"  # the metric label before a publication is found
_INTEGER = re.compile(r"-?[0-9]+")
_PARAMS = ("k", "model")
_JSON_OPTIONS = orjson.OPT_UTC_Z


class RecommendationRoute:
    """The route's handler, its reader threads, breaker and metrics."""

    def __init__(self, store: FeatureStore, metrics: ServerMetrics, guard: Guard) -> None:
        self.store = store
        self.guard = guard
        self.breaker = Breaker("online store", model="")
        self._lists: RecommendationLists | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "modelyard_recommendation_requests",
            "Recommendation reads (GET /v1/recommendations/USER) by model and HTTP status code.",
            ["model", "code"],
            registry=metrics.registry,
        )
        self.latency = Histogram(
            "modelyard_recommendation_request_latency_seconds",
            "Time from a recommendation read received to its answer ready (answered reads).",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=metrics.registry,
        )

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The fast path's router: (handler, params) for a recommendation read, else None."""
        if method != "GET" or not path.startswith(PREFIX):
            return None
        user = path[len(PREFIX) :]
        if not user or "/" in user:
            return None
        return self.handle, {"user_id": user}

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    async def handle(self, call: Call, params: dict[str, str]) -> Reply:
        started = time.perf_counter()
        rid = call.request_id
        status, found = 200, None
        label = UNKNOWN_MODEL
        try:
            user_id = _user_id(params["user_id"])
            k, model = _query(call.scope.get("query_string", b""))
            key = request_key(call.scope)
            if model is not None:
                self._check_key(key, model)
            found = await self._read(user_id, k, model)
            label = found.publication.model
            if model is None:
                self._check_key(key, label)
            return Reply(200, _answer(found, rid), rid)
        except ModelyardError as exc:
            status = exc.status
            return error_reply(exc, rid)
        except Exception:
            status = 500
            logger.exception("recommendation read failed", extra={"request_id": rid})
            return _failed(rid)
        finally:
            self._done(label, found, status, rid, started)

    def _check_key(self, key: ApiKey | None, model: str) -> None:
        """A key limited to some models reads only their lists."""
        if key is None or key.role == "admin" or key.covers(model):
            return
        exc = ForbiddenError(
            f"{key.describe()} may use models {', '.join(key.models or ())} only, not the "
            f"recommendations of '{model}'; use a key for that model",
            "wrong_model",
        )
        self.guard.refused(exc, "http")
        raise exc

    async def _read(self, user_id: int, k: int | None, model: str | None) -> Recommendations:
        if not self.breaker.allow():
            raise self._unavailable()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(READ_THREADS, "modelyard-recommendations")
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self._threads, self._read_now, user_id, k, model)
        except BackendUnavailableError as exc:
            self.breaker.failed(exc.message)
            raise self._unavailable() from None
        except InvalidInputError as exc:  # k above the night's lists
            self.breaker.succeeded()
            raise _invalid("k", exc.message) from None
        except ModelyardError:  # nothing published: the store answered
            self.breaker.succeeded()
            raise
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()
        return found

    def _read_now(self, user_id: int, k: int | None, model: str | None) -> Recommendations:
        if self._lists is None:  # opens the store (Redis: connects) on first use
            try:
                online = self.store.online
            except InvalidInputError as exc:  # no online store: not the caller's k
                raise ConfigError(exc.message) from None
            self._lists = RecommendationLists(online)
        return self._lists.read(user_id, k=k, model=model)

    def _unavailable(self) -> OnlineStoreUnavailableError:
        return OnlineStoreUnavailableError(
            "recommendations are read from the online store, which is unavailable "
            f"({self.breaker.error}); retry shortly"
        )

    def _done(
        self, label: str, found: Recommendations | None, status: int, rid: str, started: float
    ) -> None:
        elapsed = time.perf_counter() - started
        requests, latency = self._metrics_of(label, status)
        requests.inc()
        if latency is not None:
            latency.observe(elapsed)
        if logger.isEnabledFor(logging.INFO):  # a 500 is also logged where it happened
            publication = None if found is None else found.publication
            fields = {
                "model": None if publication is None else publication.model,
                "version": None if publication is None else publication.version,
                "night": None if publication is None else publication.night,
                "items": None if found is None else len(found.items),
                "fallback": None if found is None else found.fallback,
                "request_id": rid,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
            }
            info_line(logger, "recommendations", fields)

    def _metrics_of(self, label: str, status: int) -> tuple[Any, Any]:
        # Looked up once per label set (``labels()`` takes a lock and builds a key).
        found = self._series.get((label, status))
        if found is None:
            latency = self.latency.labels(label) if status == 200 else None
            found = (self.requests.labels(label, str(status)), latency)
            self._series[(label, status)] = found
        return found


def _invalid(field: str, message: str) -> SchemaValidationError:
    return SchemaValidationError([FieldError(field, message)], what="request")


def _user_id(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise _invalid(
            "user_id", f"user id {text[:40]!r} is not an integer; use /v1/recommendations/5"
        )
    value = int(text) if len(text) < 40 else INT64[1] + 1
    if not INT64[0] <= value <= INT64[1]:
        raise _invalid(
            "user_id", f"user id {text[:40]} is beyond int64 (-2**63 to 2**63-1); no list has it"
        )
    return value


def _query(raw: bytes) -> tuple[int | None, str | None]:
    """(k, model) of the query string: ``?k=10&model=NAME``, each at most once."""
    given: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name not in _PARAMS:
            raise _invalid(
                name, f"unknown query parameter {name[:40]!r}; this route takes k and model"
            )
        if name in given:
            raise _invalid(name, f"{name} is given twice; give it once")
        given[name] = value
    k = None  # 10, or all the night kept where it kept fewer
    if "k" in given:
        text = given["k"]
        if not _INTEGER.fullmatch(text):
            raise _invalid("k", f"k={text[:40]!r} is not a whole number of items; e.g. k=10")
        k = int(text) if len(text) <= 18 else 2**63  # above any night's k: refused so
        if k < 1:
            raise _invalid("k", f"k={k}: ask for 1 or more items")
    model = given.get("model")
    if model == "":
        raise _invalid("model", "model is empty; name a model (model=NAME) or leave it out")
    return k, model


def _answer(found: Recommendations, rid: str) -> bytes:
    publication = found.publication
    payload = {
        "user_id": found.user_id,
        "model": publication.model,
        "night": publication.night,
        "version": publication.version,
        "published_at": publication.published_at,
        "fallback": "popularity" if found.fallback else False,
        "items": [
            {"item_id": i, "score": s} for i, s in zip(found.items, found.scores, strict=True)
        ],
        "request_id": rid,
    }
    return orjson.dumps(payload, option=_JSON_OPTIONS)


def _failed(rid: str) -> Reply:
    message = "the recommendation read failed; the error is logged with this request_id"
    body = {"code": "recommendations_failed", "message": message, "request_id": rid}
    return Reply(500, orjson.dumps(body), rid)


def routes(
    features: MethodRouter | None, recommendations: RecommendationRoute | None
) -> MethodRouter | None:
    """The fast path's extra router (``install``'s ``more``): the feature lookups', then
    this route's, whichever the app has."""
    if recommendations is None or features is None:
        return features if recommendations is None else recommendations.route
    ours = recommendations.route

    def route(method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        return features(method, path) or ours(method, path)

    return route


def add_recommendation_route(
    app: FastAPI, store: FeatureStore, metrics: ServerMetrics, guard: Guard
) -> RecommendationRoute:
    """Declare the route on ``app`` (for /docs); the fast path answers it."""
    route = RecommendationRoute(store, metrics, guard)

    async def recommendations(request: Request) -> Response:
        # The fast path answers first; the same handler runs for a caller that reaches
        # the FastAPI route itself. The parameters are read, not declared: FastAPI would
        # add its own 422 shape to the document, which this route never answers.
        user = request.path_params["user_id"]
        return AsgiEndpoint(route.handle, {"user_id": user}, app.state.body_timeout_s)

    app.add_api_route(
        PREFIX + "{user_id}",
        recommendations,
        methods=["GET"],
        tags=["recommendations"],
        name="recommendations_get",
        summary="A user's recommended items, as the nightly job published them",
        description=DESCRIPTION,
        openapi_extra=OPERATION,
    )
    return route


# -- the OpenAPI document ---------------------------------------------------------------------
DESCRIPTION = (
    "The user's top-k items of the night the nightly job last published (one night, "
    "never a mix of two), best first. `fallback` is false for the user's own list and "
    '"popularity" for a user the night did not score, who gets the popularity list.'
)
_ANSWER = {
    "type": "object",
    "required": "user_id model night version published_at fallback items request_id".split(),
    "properties": {
        "user_id": {"type": "integer"},
        "model": {"type": "string"},
        "night": {"type": "string", "format": "date"},
        "version": {"type": ["integer", "null"]},
        "published_at": {"type": "string", "format": "date-time"},
        "fallback": {"enum": [False, "popularity"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["item_id", "score"],
                "properties": {"item_id": {"type": "integer"}, "score": {"type": "number"}},
            },
        },
        "request_id": {"type": "string"},
    },
}  # fmt: skip
OPERATION: dict[str, Any] = {
    "parameters": [
        {
            "name": "user_id",
            "in": "path",
            "required": True,
            "description": "the user's id (an int64)",
            "schema": {"type": "integer", "format": "int64"},
        },
        {
            "name": "k",
            "in": "query",
            "required": False,
            "description": "items to return, 1 to the k the night was published with "
            "(default: 10, or the night's k where it is smaller)",
            "schema": {"type": "integer", "minimum": 1},
        },
        {
            "name": "model",
            "in": "query",
            "required": False,
            "description": "whose lists (default: the newest published model)",
            "schema": {"type": "string", "minLength": 1},
        },
    ],
    "responses": {
        "200": json_ok("the user's list, or the popularity list (fallback)", _ANSWER),
        "403": error_response("the key's role or model list does not cover these lists"),
        "404": error_response(
            "nothing is published (for this model): run the nightly job, then ask again"
        ),
        "422": error_response(
            "the user id or k is not an integer, the user id is beyond int64, k < 1, k is "
            "above the items per user the night kept, or an unknown query parameter"
        ),
        "500": error_response("the read failed; the error is logged with the request_id"),
        "503": error_response("the online store is unavailable; retry shortly"),
    },
}
