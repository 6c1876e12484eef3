"""The models one server answers for, their per-request metrics and log line, and alias following.

Every variant of every model has its own ``threads`` worker threads (``_deployment.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from modelyard.backends.predictions import PredictionLog
from modelyard.errors import ConfigError, NotFoundError
from modelyard.registry import Registry
from modelyard.serving._admission import Admission
from modelyard.serving._deployment import ROUTED, Deployment, Inference
from modelyard.serving._log_health import PredictionLogHealth
from modelyard.serving._logging import info_line
from modelyard.serving._metrics import ServerMetrics
from modelyard.serving._options import ServeOptions
from modelyard.serving._slot import ReaderFactory, Servable

logger = logging.getLogger("modelyard.serving")

# The ``model`` label of requests for a model this server does not serve.
UNKNOWN_MODEL = "_unknown"


class ModelPool:
    """Deployments by name; ``start()`` begins following aliases every ``poll_interval_s``."""

    def __init__(
        self,
        registry: Registry,
        options: Sequence[ServeOptions],
        *,
        readers: ReaderFactory | None = None,
        threads: int = 2,
        poll_interval_s: float = 1.0,
        log: PredictionLog | None = None,
    ) -> None:
        self.registry = registry
        self.log = log
        self.options = list(options)
        self.readers = readers
        self.threads = threads
        self.poll_interval_s = poll_interval_s
        self.metrics = ServerMetrics()
        self.log_health = None if log is None else PredictionLogHealth(log, self.metrics.registry)
        if self.log_health is not None:
            self.metrics.before_render.append(self.log_health.refresh)
        self.deployments: dict[str, Deployment] = {}
        self.admission = Admission({})  # requests held per model, before routing
        # Bounded: served model names only, their versions, variants and status codes.
        self._series_cache: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._shedding: dict[str, list[float]] = {}  # model: [first refusal, refused since]
        self._poller: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Resolve and load every model now: a bad reference fails before serving starts."""
        names = [o.ref.split("@")[0].split("/")[0] for o in self.options]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"model {twice[0]!r} is named twice; serve each name once")
        for opts in self.options:
            deployment = Deployment(
                self.registry, opts, self.metrics, self.threads, self.readers, self.log
            )
            deployment.load()
            self.deployments[deployment.name] = deployment
        limits = {n: d.options.max_queue for n, d in self.deployments.items()}
        self.admission = Admission(limits, self.count_refusal)

    async def start(self) -> None:
        if self.log is not None:
            self.log.start(ship_in_child=True)  # Parquet work off the serving process
        if self.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._follow_aliases())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        for deployment in self.deployments.values():
            await deployment.close()
        if self.log is not None:
            self.log.close()

    async def _follow_aliases(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.refresh()
            except Exception:  # never let a metadata hiccup stop alias following
                logger.exception("alias refresh failed")

    async def refresh(self) -> bool:
        """Look up every alias now (loading runs in a thread); True if any model swapped."""
        loop = asyncio.get_running_loop()
        changed = False
        for deployment in self.deployments.values():
            changed = await loop.run_in_executor(None, deployment.refresh) or changed
        return changed

    def get(self, name: str) -> Deployment:
        try:
            return self.deployments[name]
        except KeyError:
            served = ", ".join(self.deployments) or "none"
            raise NotFoundError(f"model '{name}' is not served here (serving: {served})") from None

    async def rollback(self, name: str) -> Servable:
        """Move the alias back in the registry and serve the kept version at once."""
        deployment = self.get(name)
        slot = deployment.champion
        if slot.ref.alias is None:
            raise ConfigError(
                f"model '{name}' is served by version ({slot.ref}); only an alias can roll back"
            )
        loop = asyncio.get_running_loop()
        # to_thread, not run_in_executor: it carries the context, and so the audit log's
        # actor (the request's key), into the thread that moves the alias.
        target = await asyncio.to_thread(self.registry.rollback, name, slot.ref.alias)
        previous = slot.previous
        if previous is not None and previous.version == target.version:
            return slot.swap_to_previous()
        await loop.run_in_executor(None, slot.refresh)
        return deployment.served

    def observe(self, name: str, protocol: str) -> Callable[..., None]:
        """The per-request log line and metrics, shared by every protocol."""
        ROUTED.set(None)  # the request's own routing only (a test client reuses one context)
        # Metric labels come from served models only: a name the caller made up would add
        # a series per request (the log line still carries the name as sent).
        label = name if name in self.deployments else UNKNOWN_MODEL

        def done(
            rid: str, status: int, result: Inference | None, started: float, shed: bool = False
        ) -> None:
            elapsed = time.perf_counter() - started
            version = str(result.version) if result else ""
            variant = result.variant if result else ""
            requests, latency = self._series(label, version, variant, status)
            requests.inc()
            if latency is not None:
                latency.observe(elapsed)
            if shed and self._shed_quietly(label):
                return
            if not logger.isEnabledFor(logging.INFO):
                if status != 200:
                    self._log_failure(name, rid, status, result, round(elapsed * 1000, 3))
                return
            extra: dict[str, Any] = {
                "model": name,
                "version": result.version if result else None,
                "variant": variant or None,
                "request_id": rid,
                "protocol": protocol,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
            }
            if result is not None and result.ab_key is not None:
                extra["ab_key"] = result.ab_key
            info_line(logger, "predict", extra)
            if status != 200:
                self._log_failure(name, rid, status, result, extra["latency_ms"])

        return done

    def count_refusal(self, name: str) -> None:
        """A request its model's admission refused (503, before routing): counted in the
        request and shed metrics, not logged (see ``_shed_quietly``)."""
        self.metrics.shed(name, "", "refused")
        requests, _ = self._series(name, "", "", 503)
        requests.inc()
        self._shed_quietly(name)

    def _shed_quietly(self, model: str) -> bool:
        """A refused request is counted, not logged: shedding must cost less than serving,
        and one log line (and one prediction-log line) per refusal would cost about as
        much. One warning per model says how many were refused in the second after the
        first refusal of a burst, when that second ends."""
        if self.admission.limits.get(model) is None:
            return False
        window = self._shedding.get(model)
        if window is not None:
            window[1] += 1
            return True
        self._shedding[model] = [time.monotonic(), 1]
        try:
            asyncio.get_running_loop().call_later(1.0, self._report_shedding, model)
        except RuntimeError:  # no event loop in this thread: say it now
            self._report_shedding(model)
        return True

    def _report_shedding(self, model: str) -> None:
        since, count = self._shedding.pop(model)
        logger.warning(
            "shedding load",
            extra={
                "model": model,
                "refused": int(count),
                "seconds": round(time.monotonic() - since, 1),
            },
        )

    def _series(self, model: str, version: str, variant: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of one label set, looked up once
        (prometheus-client's ``labels()`` takes a lock and builds a key on every call).
        A failed request has no latency series: it is never observed there."""
        key = (model, version, variant, status)
        found = self._series_cache.get(key)
        if found is None:
            latency = None
            if status == 200:
                latency = self.metrics.latency.labels(model, version, variant)
            found = (self.metrics.requests.labels(model, version, variant, str(status)), latency)
            self._series_cache[key] = found
        return found

    def _log_failure(
        self, name: str, rid: str, status: int, result: Inference | None, latency_ms: float
    ) -> None:
        """Log a failed request for the error-rate SLO.

        Not awaited: a failure is counted, not answered from the log, so it need not be
        on disk before the response leaves.
        """
        deployment = self.deployments.get(name)
        if self.log is None or deployment is None:
            return
        current = deployment.champion.current
        version: int | None = current.version if current else None
        variant = deployment.champion.label
        routed = ROUTED.get()  # a request that failed after routing: charge its variant
        if result is not None:
            version, variant = result.version, result.variant
        elif routed is not None:
            version, variant = routed
        self.log.append_nowait(
            self.log.error_line(
                request_id=rid,
                model=name,
                version=version,
                variant=variant,
                status=status,
                latency_ms=latency_ms,
            )
        )

    def readiness(self, started: bool) -> tuple[bool, dict[str, Any]]:
        models: dict[str, Any] = {}
        ok = started
        for name, d in self.deployments.items():
            for slot in d.slots:
                key = name if slot is d.champion else f"{name}@{slot.label}"
                ready = slot.ready and slot.load_error is None and started
                ok = ok and ready
                entry: dict[str, Any] = {
                    "ref": str(slot.ref),
                    "version": slot.current.version if slot.current else None,
                    "previous": slot.previous.version if slot.previous else None,
                    "ready": ready,
                }
                if slot.load_error:
                    entry["error"] = slot.load_error
                elif slot.resolve_error:  # serving what is loaded; the alias is not followed
                    entry["warning"] = slot.resolve_error
                models[key] = entry
        return ok, models
