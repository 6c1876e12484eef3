"""The feature services a server reads: resolved once, resolved again when they change.

Resolving a service reads its definition and its views' from the metadata store, so the
reader of each (service, ``full_feature_names``) is kept. Every ``recheck_s`` a request
starts one check in the background, without waiting for it: one query for the latest
version of every definition. When any changed (``modelyard features apply``) the readers
are dropped and the next request resolves again, so a new version of a service or of
one of its views is served without a restart. A name the last check did not know is
checked at once (at most once per ``MIN_RECHECK_S``), so a service applied a moment ago
is found and a made-up name costs no query per request.

A key limited to some models may read a service only when some version of one of those
models is bound to it (``ModelVersion.features``); the services each model is bound to
are looked up once per ``BOUND_TTL_S``.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from modelyard._redact import redact
from modelyard.errors import (
    BackendUnavailableError,
    FieldError,
    ModelyardError,
    NotFoundError,
    SchemaValidationError,
)

if TYPE_CHECKING:
    from modelyard.contracts import Field
    from modelyard.features import FeatureStore, OnlineReader
    from modelyard.registry import Registry

logger = logging.getLogger("modelyard.serving")

MIN_RECHECK_S = 1.0
BOUND_TTL_S = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class Resolved:
    """One service at one version, ready to read: its join keys and feature names."""

    service: str
    version: int
    reader: OnlineReader
    keys: tuple[Field, ...]
    names: tuple[str, ...]


class FeatureServices:
    """Readers by service name, kept current with the stored definitions."""

    def __init__(self, store: FeatureStore, registry: Registry, *, recheck_s: float) -> None:
        self.store = store
        self.registry = registry
        self.recheck_s = recheck_s
        self._latest: dict[str, int] | None = None  # service -> its latest version
        self._token: tuple[tuple[str, str, int], ...] | None = None
        self._checked_at = -math.inf
        self._checking: asyncio.Future[None] | None = None
        self._background: asyncio.Task[None] | None = None
        self._readers: dict[tuple[str, bool], Resolved] = {}
        self._resolving: dict[tuple[str, bool], asyncio.Future[Resolved]] = {}
        self._bound: dict[str, tuple[float, frozenset[str]]] = {}
        self._down = False

    def known(self, service: str) -> bool:
        """The last check found ``service`` (no I/O): for metric labels."""
        return self._latest is not None and service in self._latest

    async def get(self, service: str, full_feature_names: bool) -> Resolved:
        """The reader of ``service``; 404 naming the nearest service when there is none."""
        self._recheck_soon()
        found = self._readers.get((service, full_feature_names))
        if found is not None:
            return found
        latest = self._latest
        stale = time.monotonic() - self._checked_at >= MIN_RECHECK_S
        if latest is None or (service not in latest and stale):
            await self._check_shared()
            latest = self._latest
            assert latest is not None
        version = latest.get(service)
        if version is None:
            raise _unknown(service, sorted(latest))
        return await self._resolve(service, full_feature_names, version)

    async def warm(self) -> None:
        """Resolve every service now, so that no first request pays for it (imports, the
        definitions): a feature server does it as it starts. Failures wait for first use."""
        try:
            await self._check_shared()
        except Exception as exc:
            logger.info("feature services not resolved at start (%s)", _reason(exc))
            return
        for name, version in sorted((self._latest or {}).items()):
            try:
                await self._resolve(name, False, version)
            except Exception as exc:  # this one answers its error when it is asked for
                logger.info("feature service %r not resolved at start (%s)", name, _reason(exc))

    # -- the definitions check -------------------------------------------------------------
    def _recheck_soon(self) -> None:
        if self.recheck_s <= 0 or self._latest is None or self._background is not None:
            return
        if time.monotonic() - self._checked_at < self.recheck_s:
            return
        self._background = asyncio.get_running_loop().create_task(self._check_quietly())
        self._background.add_done_callback(lambda _: setattr(self, "_background", None))

    async def _check_quietly(self) -> None:
        try:
            await self._check_shared()
        except Exception as exc:  # keep serving the readers resolved before
            if not self._down:  # once per outage, not once per check
                logger.warning(
                    "cannot check the feature definitions (%s); serving the versions read "
                    "before until the metadata store answers",
                    _reason(exc),
                )
            self._down = True
            self._checked_at = time.monotonic()  # try again after recheck_s, not at once

    async def _check_shared(self) -> None:
        # One check at a time, shared by every request that waits for it.
        if self._checking is None:
            self._checking = asyncio.ensure_future(self._check())
            self._checking.add_done_callback(_retrieve)
            self._checking.add_done_callback(lambda _: setattr(self, "_checking", None))
        await asyncio.shield(self._checking)

    async def _check(self) -> None:
        rows = await _off_loop(self.store.list, "read the feature definitions")
        token = tuple(rows)
        if token != self._token:
            self._readers.clear()
        self._token = token
        self._latest = {name: version for kind, name, version in rows if kind == "service"}
        self._checked_at = time.monotonic()
        if self._down:
            logger.info("feature definitions checked again: the metadata store answers")
        self._down = False

    # -- resolving -------------------------------------------------------------------------
    async def _resolve(self, service: str, full: bool, version: int) -> Resolved:
        key = (service, full)
        pending = self._resolving.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._build(service, full, version))
            self._resolving[key] = pending
            pending.add_done_callback(_retrieve)
            pending.add_done_callback(lambda _: self._resolving.pop(key, None))
        return await asyncio.shield(pending)

    async def _build(self, service: str, full: bool, version: int) -> Resolved:
        def resolve() -> Resolved:
            found = self.store.service(service, version)
            reader = self.store.online_reader(found, full_feature_names=full)
            return Resolved(
                service, version, reader, tuple(reader.key_fields), tuple(reader.feature_names)
            )

        resolved = await _off_loop(resolve, f"resolve feature service '{service}'")
        twice = sorted({n for n in resolved.names if resolved.names.count(n) > 1})
        if twice:
            raise SchemaValidationError(
                [
                    FieldError(
                        "full_feature_names",
                        f"feature '{twice[0]}' of service '{service}' is in two of its views; "
                        'send "full_feature_names": true (GET: ?full_feature_names=true)',
                    )
                ],
                what="request",
            )
        if self._latest is not None and self._latest.get(service) == version:
            self._readers[(service, full)] = resolved  # not if a check moved on meanwhile
        return resolved

    # -- which services a model-limited key may read --------------------------------------
    async def bound_to_any(self, models: Sequence[str], service: str) -> bool:
        """Some version of one of ``models`` is bound to ``service``."""
        for model in models:
            if service in await self._bound_services(model):
                return True
        return False

    async def _bound_services(self, model: str) -> frozenset[str]:
        now = time.monotonic()
        entry = self._bound.get(model)
        if entry is not None and now - entry[0] < BOUND_TTL_S:
            return entry[1]
        try:
            services = await _off_loop(
                lambda: self._services_of(model), f"look up the feature services of '{model}'"
            )
        except ModelyardError:
            if entry is not None:  # the store is down: the last answer stands meanwhile
                return entry[1]
            raise
        self._bound[model] = (now, services)
        return services

    def _services_of(self, model: str) -> frozenset[str]:
        try:
            versions = self.registry.versions(model)
        except NotFoundError:  # a key may name a model not registered (yet)
            return frozenset()
        return frozenset(v.features.service for v in versions if v.features is not None)


async def _off_loop(fn: Callable[[], T], what: str) -> T:
    """``fn()`` in a thread; a failure that is not ours becomes a one-line 503."""
    try:
        return await asyncio.to_thread(fn)
    except ModelyardError:
        raise
    except Exception as exc:
        raise BackendUnavailableError(
            f"cannot {what}: the metadata store does not answer ({_reason(exc)}); retry shortly"
        ) from None


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A shared future whose every waiter was cancelled (clients gone) must not end in
    # asyncio's "exception was never retrieved": its error reaches the next request.
    if not future.cancelled():
        future.exception()


def _unknown(service: str, names: list[str]) -> NotFoundError:
    if not names:
        return NotFoundError(
            f"feature service '{service}' is not registered, and this workspace has none; "
            "define one and run 'modelyard features apply'"
        )
    close = difflib.get_close_matches(service, names, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"the services: {', '.join(names[:20])}"
    return NotFoundError(
        f"feature service '{service}' is not registered; {hint} (a new one: define it and "
        "run 'modelyard features apply')"
    )


def _reason(exc: BaseException) -> str:
    orig: Any = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    text = getattr(exc, "message", None) or str(orig if orig is not None else exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return redact(first)


__all__ = ["BOUND_TTL_S", "MIN_RECHECK_S", "FeatureServices", "Resolved"]
