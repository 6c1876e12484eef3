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

Errors (parsed in ``_recommendations_request.py``, with the answer's JSON and the
OpenAPI document) are one JSON line, ``{"code", "message", "request_id"}``: 422
``validation_failed`` for a user id or ``k`` that is not an integer, a user id beyond
int64, ``k`` < 1, ``k`` above the items the night kept per user (the message names the
limit) or a query parameter other than ``k`` and ``model``; 404 ``not_found`` when
nothing is published (for that model), saying to run the nightly job; 403 for a key
whose models do not include the lists' model; 503 ``online_store_unavailable`` while the
store is down.

Answered by the fast path (``_fast.py``) like the feature lookups (FastAPI declares the
route for /docs only): two small reads of the online store, the model's pointer, then
the user's row of the night it names. Where they run:

- SQLite: on the event loop, once the store has answered a first read in the route's
  thread (which opens it). In WAL mode, with its connection held open, a reader never
  waits for a lock, and two primary-key reads from cached pages take about 10 us: less
  than handing them to a thread and back, which also costs every other request on the
  loop a GIL hand-over (bench/recommendations.py, one worker at c=16: about 3.7k
  requests/s with each read handed to a thread, 10k inline). A page the OS does not
  hold in memory is read from disk on the loop; a night's lists are tens of MB.
- Redis (or any other store: a network read may hang until its timeout): in the route's
  reader thread, never on the event loop. The reads that wait while it works go together
  as its next batch, one pointer read and one row read for all of them
  (``RecommendationLists.read_many``): a hand-over and two round trips per batch, not
  per request, and one request alone is not delayed.

While the store is down its breaker (``_breaker.py``) answers 503 at once; reads that
waited for the thread while the store failed are answered 503 without asking it again
(the breaker's probe alone does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram

from modelyard.errors import (
    BackendUnavailableError,
    ConfigError,
    ForbiddenError,
    InvalidInputError,
    ModelyardError,
    OnlineStoreUnavailableError,
)
from modelyard.security import ApiKey
from modelyard.serving._auth import Guard, request_key
from modelyard.serving._breaker import Breaker
from modelyard.serving._fast import AsgiEndpoint, Call, Handler, MethodRouter, Reply
from modelyard.serving._logging import info_line
from modelyard.serving._metrics import ServerMetrics
from modelyard.serving._predict import error_reply
from modelyard.serving._recommendation_lists import RecommendationLists
from modelyard.serving._recommendation_rows import Recommendations
from modelyard.serving._recommendations_request import (
    DESCRIPTION,
    OPERATION,
    answer_of,
    failed_reply,
    invalid,
    query_of,
    user_id_of,
)

if TYPE_CHECKING:
    from modelyard.features import FeatureStore

logger = logging.getLogger("modelyard.serving")

PREFIX = "/v1/recommendations/"
READ_THREADS = 1  # one batch at a time: the next one forms while it is read
BATCH_MAX = 256  # reads in one batch, at most
UNKNOWN_MODEL = "_unknown"  # the metric label before a publication is found


class _Waiting:
    """A read waiting for the reader thread."""

    __slots__ = ("user_id", "k", "model", "probe", "answer")

    def __init__(self, user_id: int, k: int | None, model: str | None, probe: bool) -> None:
        self.user_id = user_id
        self.k = k
        self.model = model
        self.probe = probe  # the breaker's probe: asks the store even while it is open
        self.answer: asyncio.Future[Recommendations] | None = None


class _Shed(Exception):
    """A read that waited while the store failed: answered 503 without asking it again."""


class RecommendationRoute:
    """The route's handler, its reader thread, breaker and metrics."""

    def __init__(self, store: FeatureStore, metrics: ServerMetrics, guard: Guard) -> None:
        self.store = store
        self.guard = guard
        self.breaker = Breaker("online store", model="")
        self._lists: RecommendationLists | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._inline = False  # reads on the event loop (SQLite, once it answered)
        self._may_inline = False
        self._waiting: list[_Waiting] = []  # reads for the next batch
        self._reading = False  # a batch is being read in the thread
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
            user_id = user_id_of(params["user_id"])
            k, model = query_of(call.scope.get("query_string", b""))
            key = request_key(call.scope)
            if model is not None:
                self._check_key(key, model)
            found = await self._read(user_id, k, model)
            label = found.publication.model
            if model is None:
                self._check_key(key, label)
            return Reply(200, answer_of(found, rid), rid)
        except ModelyardError as exc:
            status = exc.status
            return error_reply(exc, rid)
        except Exception:
            status = 500
            logger.exception("recommendation read failed", extra={"request_id": rid})
            return failed_reply(rid)
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
        probe = self.breaker.error is not None  # let in as the open breaker's probe
        if not self.breaker.allow():
            raise self._unavailable()
        try:
            if self._inline:
                found = self._open().read(user_id, k=k, model=model)
            else:
                found = await self._in_threads(_Waiting(user_id, k, model, probe))
        except _Shed:
            raise self._unavailable() from None
        except BackendUnavailableError as exc:
            self.breaker.failed(exc.message)
            raise self._unavailable() from None
        except InvalidInputError as exc:  # k above the night's lists
            self.breaker.succeeded()
            raise invalid("k", exc.message) from None
        except ModelyardError:  # nothing published: the store answered
            self.breaker.succeeded()
            raise
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()
        return found

    # -- the reader thread (stores other than SQLite): the reads that wait go together ----
    async def _in_threads(self, waiting: _Waiting) -> Recommendations:
        loop = asyncio.get_running_loop()
        waiting.answer = loop.create_future()
        self._waiting.append(waiting)
        if not self._reading:
            self._start_batch(loop)
        return await waiting.answer

    def _start_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.breaker.error is not None:
            # The store failed while these waited: only the probe asks it again.
            _settle([w for w in self._waiting if not w.probe], _Shed())
            self._waiting = [w for w in self._waiting if w.probe]
            if not self._waiting:
                return
        batch, self._waiting = self._waiting[:BATCH_MAX], self._waiting[BATCH_MAX:]
        asks = [(w.user_id, w.k, w.model) for w in batch]
        try:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(READ_THREADS, "modelyard-recommendations")
            done = loop.run_in_executor(self._threads, self._read_batch, asks)
        except BaseException as exc:  # closed: the server is stopping
            _settle(batch, exc)
            return
        self._reading = True
        done.add_done_callback(partial(self._batch_done, batch, loop))

    def _batch_done(
        self, batch: list[_Waiting], loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any]
    ) -> None:
        self._reading = False
        failed = None if done.cancelled() else done.exception()
        if isinstance(failed, BackendUnavailableError):  # known before the next batch forms
            self.breaker.failed(failed.message)
        if self._waiting:  # the next batch first: the thread reads while these are answered
            self._start_batch(loop)
        if done.cancelled():
            _settle(batch, asyncio.CancelledError())
            return
        if failed is not None:
            _settle(batch, failed)
            return
        self._inline = self._may_inline  # the store opened and answered: SQLite inline now
        for waiting, found in zip(batch, done.result(), strict=True):
            if waiting.answer is not None and not waiting.answer.done():
                if isinstance(found, Recommendations):
                    waiting.answer.set_result(found)
                else:
                    waiting.answer.set_exception(found)

    def _read_batch(
        self, asks: list[tuple[int, int | None, str | None]]
    ) -> list[Recommendations | ModelyardError]:
        """In the reader thread: the answers to ``asks``, a ``read_many`` per model."""
        lists = self._open()
        models = {model for _, _, model in asks}
        if len(models) == 1:
            return lists.read_many([(u, k) for u, k, _ in asks], model=models.pop())
        found: dict[int, Recommendations | ModelyardError] = {}
        for model in models:
            indexes = [i for i, ask in enumerate(asks) if ask[2] == model]
            answers = lists.read_many([asks[i][:2] for i in indexes], model=model)
            found.update(zip(indexes, answers, strict=True))
        return [found[i] for i in range(len(asks))]

    def _open(self) -> RecommendationLists:
        if self._lists is None:  # opens the store (Redis: connects) on first use
            try:
                online = self.store.online
            except InvalidInputError as exc:  # no online store: not the caller's k
                raise ConfigError(exc.message) from None
            self._may_inline = _reads_inline(online)
            self._lists = RecommendationLists(online)
        return self._lists

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


def _settle(batch: list[_Waiting], exc: BaseException) -> None:
    """Fail every read of ``batch`` still waiting with ``exc``."""
    for waiting in batch:
        answer = waiting.answer
        if answer is not None and not answer.done():
            if isinstance(exc, asyncio.CancelledError):
                answer.cancel()
            else:
                answer.set_exception(exc)


def _reads_inline(online: object) -> bool:
    """Whether reads of ``online`` may run on the event loop: SQLite's, from local pages."""
    from modelyard.backends.online.sqlite import SqliteOnlineStore

    return isinstance(online, SqliteOnlineStore)


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
