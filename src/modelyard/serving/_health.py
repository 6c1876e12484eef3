"""Readiness (``GET /readyz``): can this replica answer predictions now?

A load balancer drains a replica that answers 503, so 503 must mean "predictions
would fail here", never "something somewhere is unwell": an outage of a back end that
every replica shares (the metadata database) would otherwise drain all of them at once.

The answer is the served models (each loaded, at its current version) plus a list of
named checks. Each check says whether it passed and whether its failure stops
predictions (``required``):

- ``metadata``: the metadata store answers ``SELECT 1``. Not required: loaded models
  keep serving without it; only alias following and the monitoring gauges pause.
- ``online_store``: the online feature store answers a ping. Checked only while a
  served model reads online features; required while one of them rejects missing
  features (``on_missing="reject"``); one that serves declared defaults keeps working.
- ``cache``: the Redis prediction cache answered its last call. Not required: the
  cache fails open.

The prediction log is a section of its own (``prediction_log``, see ``_log_health.py``):
not ready while it cannot write and its policy refuses unlogged answers.

200 ``ready``: all pass. 200 ``degraded``: only checks that are not required fail (the
body says which). 503: a model is not loaded (``starting``), failed to load its
current version, the prediction log blocks answers, or a required check fails
(``degraded``).

A check that does I/O runs in its own thread and is given ``timeout_s`` (under the 1 s
a Kubernetes probe waits by default): a back end that hangs is reported as failing
within that time, and the probe still waiting is not started again until it returns,
so a hang never piles up threads; calls meanwhile report it at once. More checks are
added with ``Readiness.add``, more sections with ``Readiness.add_section``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from modelyard._redact import redact
from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore
    from modelyard.features import FeatureStore
    from modelyard.serving._pool import ModelPool

# Under a second: a Kubernetes readinessProbe gives up after 1 s by default, and a
# replica whose probes time out is drained although it answers predictions.
CHECK_TIMEOUT_S = 0.75
T = TypeVar("T")

Section = Callable[[], tuple[bool, dict[str, Any]]]


def _always() -> bool:
    return True


def _never() -> bool:
    return False


@dataclass
class Check:
    """One named condition; ``probe`` raises (with the reason) when it does not hold.

    ``applies`` and ``required`` must be cheap (no I/O): they are asked on every call,
    also when the probe hangs. ``blocking=False`` runs the probe on the event loop
    (for probes that only read memory).
    """

    name: str
    probe: Callable[[], None]
    required: Callable[[], bool] = _always
    applies: Callable[[], bool] = _always
    blocking: bool = True
    timeout_s: float = CHECK_TIMEOUT_S
    _pending: Future[None] | None = field(default=None, repr=False)
    _since: float = field(default=0.0, repr=False)

    async def run(self) -> dict[str, Any] | None:
        """``{"ok", "required", "error"?}``, or None when the check does not apply now."""
        if not self.applies():
            return None
        required = self.required()
        try:
            if self.blocking:
                await self._probe_in_thread()
            else:
                self.probe()
        except _Hung:
            waited = time.monotonic() - self._since
            return {
                "ok": False,
                "required": required,
                "error": f"no answer for {waited:.1f} s (timeout {self.timeout_s:g} s)",
            }
        except Exception as exc:
            return {"ok": False, "required": required, "error": _reason(exc)}
        return {"ok": True, "required": required}

    async def _probe_in_thread(self) -> None:
        pending = self._pending
        if pending is None or pending.done():
            pending = self._pending = in_daemon_thread(self.probe, f"modelyard-readyz-{self.name}")
            self._since = time.monotonic()
        left = self.timeout_s - (time.monotonic() - self._since)
        if left <= 0:  # still stuck since an earlier call: say so now, do not wait again
            raise _Hung
        # shield: a timeout must not cancel the probe that is still waiting on the back end
        waiting = asyncio.wrap_future(pending)
        # A probe that fails after we stopped waiting is superseded by the next call's
        # probe; its error must not surface as asyncio's "exception was never retrieved".
        waiting.add_done_callback(_retrieve)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), left)
        except TimeoutError:
            raise _Hung from None


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class _Hung(Exception):
    """The probe gave no answer within the check's timeout."""


class Readiness:
    """The served models plus named checks; ``evaluate`` gives the status code and body."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool
        self.checks: list[Check] = []
        self.sections: dict[str, Section] = {}

    def add_section(self, name: str, section: Section) -> None:
        """A top-level part of the body: ``section()`` gives (ready, what to show), at once."""
        self.sections[name] = section

    def add(self, check: Check) -> None:
        if any(c.name == check.name for c in self.checks):
            raise ValueError(f"readiness check {check.name!r} is already added")
        self.checks.append(check)

    async def evaluate(self, started: bool) -> tuple[int, dict[str, Any]]:
        models_ok, models = self.pool.readiness(started)
        results = await asyncio.gather(*(c.run() for c in self.checks))
        checks = {c.name: r for c, r in zip(self.checks, results, strict=True) if r is not None}
        blocking = [n for n, r in checks.items() if not r["ok"] and r["required"]]
        shown: dict[str, Any] = {}
        for name, section in self.sections.items():
            section_ok, shown[name] = section()
            models_ok = models_ok and section_ok
        ok = models_ok and not blocking
        if ok:
            status = "ready" if all(r["ok"] for r in checks.values()) else "degraded"
        else:
            status = "degraded" if started else "starting"
        body: dict[str, Any] = {"status": status, "models": models, **shown, "checks": checks}
        return (200 if ok else 503), body


def server_readiness(
    pool: ModelPool, metadata: MetadataStore | None, features: FeatureStore | None
) -> Readiness:
    """The checks of a model server: metadata, online store and cache, as described above."""
    readiness = Readiness(pool)
    if pool.log_health is not None:  # its own rules, by policy (serving/_log_health.py)
        readiness.add_section("prediction_log", pool.log_health.readiness)
    if metadata is not None:  # None: the registry is reached through a team server
        readiness.add(Check("metadata", lambda: _ping_metadata(metadata), required=_never))
    if features is not None:
        readiness.add(
            Check(
                "online_store",
                lambda: _ping_online(features),
                required=lambda: "reject" in _feature_policies(pool),
                applies=lambda: bool(_feature_policies(pool)),
            )
        )
    readiness.add(
        Check(
            "cache",
            lambda: _cache_state(pool),
            required=_never,
            applies=lambda: bool(_redis_caches(pool)),
            blocking=False,
        )
    )
    return readiness


def _ping_metadata(metadata: MetadataStore) -> None:
    from sqlalchemy import text

    with metadata.read() as conn:
        conn.execute(text("SELECT 1"))


def _ping_online(features: FeatureStore) -> None:
    store = features.online  # opening it is a ping too
    ping = getattr(store, "ping", None)
    if ping is not None:  # SQLite: fails while a configured file does not exist
        ping()


def _feature_policies(pool: ModelPool) -> set[str]:
    """The ``on_missing`` policies of every served version that reads online features."""
    return {
        slot.current.enricher.binding.on_missing
        for d in pool.deployments.values()
        for slot in d.slots
        if slot.current is not None and slot.current.enricher is not None
    }


def _redis_caches(pool: ModelPool) -> dict[str, Any]:
    from modelyard.serving._cache import RedisCache

    return {n: d.cache for n, d in pool.deployments.items() if isinstance(d.cache, RedisCache)}


def _cache_state(pool: ModelPool) -> None:
    failing = [f"{n}: {c.breaker.error}" for n, c in _redis_caches(pool).items() if c.breaker.error]
    if failing:
        raise ConnectionError("; ".join(failing))


def in_daemon_thread(fn: Callable[[], T], name: str) -> Future[T]:
    """``fn`` in a daemon thread: a call stuck on a dead socket must not block exit."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ModelyardError):
        return exc.message
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    text = str(orig if orig is not None else exc).strip()
    first = text.splitlines()[0] if text else ""
    return redact(f"{type(orig or exc).__name__}: {first}")
