"""Following a model's live traffic split (``registry.get_traffic``) on every replica.

A canary rollout writes the split to the metadata store; each server reads it when it
polls its aliases (never per request) and turns it into a ``Route``: the policy and
the candidate slot together, replaced whole and read once per request, so a request
never pairs the policy of one route with the candidate of another. While the row
exists it decides, with a candidate slot loaded on demand when the serve spec has
none; when the row goes, the spec's policy (canary, A/B or shadow) is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.errors import ConfigError
from modelyard.registry import Registry, TrafficSplit, get_traffic
from modelyard.serving._options import Canary
from modelyard.serving._router import Policy
from modelyard.serving._slot import ModelSlot

logger = logging.getLogger("modelyard.serving")


@dataclass(frozen=True)
class Route:
    """How requests are split now: the policy, and the candidate slot it sends to."""

    policy: Policy
    candidate: ModelSlot | None


class SplitFollower:
    """Keeps one deployment's ``route`` in step with its spec and its traffic row.

    Args:
        static: the serve spec's candidate slot (loaded by the deployment), if any.
        new_slot: builds an unloaded slot for ``NAME@alias`` (a split's candidate).
        check: raises ``ConfigError`` when a loaded candidate cannot take the
            champion's requests.
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        champion_label: str,
        spec: Policy,
        static: ModelSlot | None,
        new_slot: Callable[[str], ModelSlot],
        check: Callable[[ModelSlot], None],
    ) -> None:
        self.registry = registry
        self.name = name
        self.champion_label = champion_label
        self.spec = spec
        self.static = static
        self.new_slot = new_slot
        self.check = check
        self.route = Route(spec, static)
        self._dynamic: ModelSlot | None = None  # a candidate only the split asked for
        self._unreadable = False
        self._refused: tuple[str, int] | None = None

    def follow(self) -> bool:
        """Read the split and route by it (blocking: call it off the event loop).

        Returns True when the route changed.
        """
        try:
            split = get_traffic(self.registry, self.name)
        except Exception:
            # Keep routing as it is: flipping a rollout because the store blinked is worse.
            if not self._unreadable:
                logger.exception("traffic split unreadable", extra={"model": self.name})
            self._unreadable = True
            return False
        self._unreadable = False
        route = Route(self.spec, self.static)
        if split is not None:
            slot = self._candidate(split) if split.percent > 0 else None
            canary = Canary(candidate=split.candidate, percent=split.percent) if slot else None
            route = Route(canary, slot)
        dynamic = self._dynamic
        if dynamic is not None and (
            split is None or split.percent <= 0 or split.candidate != dynamic.ref.alias
        ):
            # Freed once in-flight requests let go of it. Kept while the split names it,
            # even unloadable: it remembers the failed version, so no reload every poll.
            self._dynamic = None
        if route == self.route:
            return False
        self.route = route
        current = None if route.candidate is None else route.candidate.current
        logger.info(
            "traffic split",
            extra={
                "model": self.name,
                "policy": None if route.policy is None else type(route.policy).__name__.lower(),
                "percent": None if split is None else split.percent,
                "variant": None if route.candidate is None else route.candidate.label,
                "version": None if current is None else current.version,
            },
        )
        return True

    def _candidate(self, split: TrafficSplit) -> ModelSlot | None:
        """The loaded slot of ``NAME@candidate``, or None when it cannot take traffic.

        A candidate that fails to load, or needs fields the champion does not take, is
        logged and left out: the champion keeps answering everything.
        """
        alias = split.candidate
        if alias == self.champion_label:
            self._refuse(alias, 0, "it is the champion's own alias")
            return None
        if self.static is not None and self.static.ref.alias == alias:
            slot = self.static  # refreshed by the deployment with the champion
        else:
            if self._dynamic is None or self._dynamic.ref.alias != alias:
                self._dynamic = self.new_slot(alias)
            slot = self._dynamic
            slot.refresh()  # loads it the first time; a failure is logged once per version
        servable = slot.current
        if servable is None or slot.load_error is not None:
            return None  # ModelSlot.refresh logged why
        try:
            self.check(slot)
        except ConfigError as exc:
            self._refuse(alias, servable.version, exc.message)
            return None
        return slot

    def _refuse(self, alias: str, version: int, why: str) -> None:
        if self._refused != (alias, version):  # once, not every poll
            logger.error(
                "traffic split refused",
                extra={"model": self.name, "variant": alias, "version": version, "reason": why},
            )
        self._refused = (alias, version)
