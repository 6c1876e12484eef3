"""Following a model's live traffic split (``registry.get_traffic``) on every replica.

A canary rollout writes the split to the metadata store; each server reads it when it
polls its aliases (never per request) and turns it into a ``Route``: the policy and
the candidate slot together, replaced whole and read once per request, so a request
never pairs the policy of one route with the candidate of another. While the row
exists it decides, with a candidate slot loaded on demand when the serve spec has
none; when the row goes, or its lease runs out (``TrafficSplit.expired``: the rollout
that owned it died), the spec's policy (canary, A/B or shadow) is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.errors import ConfigError
from modelyard.registry import (
    ModelRef,
    Registry,
    Signature,
    TrafficSplit,
    get_traffic,
    signature_problems,
)
from modelyard.serving._options import Canary
from modelyard.serving._router import Policy
from modelyard.serving._slot import ModelSlot, Servable

logger = logging.getLogger("modelyard.serving")


@dataclass(frozen=True)
class Route:
    """How requests are split now: the policy, and the candidate slot it sends to."""

    policy: Policy
    candidate: ModelSlot | None


def check_candidate(champion: Servable, ref: ModelRef, slot: ModelSlot) -> None:
    """Raise ``ConfigError`` when ``slot`` cannot take the place of ``champion`` (``ref``).

    The registry's one rule (the one a release checks), on what callers see: requests
    (entity keys and request fields, for a model that reads online features) and outputs.
    """
    candidate = slot.current
    assert candidate is not None
    problems = signature_problems(_contract(champion), _contract(candidate))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(
            f"candidate {slot.ref} (version {candidate.version}) cannot take the place of "
            f"{ref}: {problems[0]}{more}; a candidate must accept the champion's requests "
            "and return its outputs"
        )


def _contract(servable: Servable) -> Signature:
    outputs = servable.model.version.signature.outputs
    return Signature(inputs=servable.request_schema, outputs=outputs)


class SplitFollower:
    """Keeps one deployment's ``route`` in step with its spec and its traffic row.

    Args:
        static: the serve spec's candidate slot (loaded by the deployment), if any.
        new_slot: builds an unloaded slot for ``NAME@alias`` (a split's candidate).
        check: raises ``ConfigError`` when a loaded candidate cannot take the
            champion's requests.
        drop: told the label of a split's candidate slot once no route uses it.
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
        drop: Callable[[str], None] = lambda label: None,
    ) -> None:
        self.registry = registry
        self.name = name
        self.champion_label = champion_label
        self.spec = spec
        self.static = static
        self.new_slot = new_slot
        self.check = check
        self.drop = drop
        self.route = Route(spec, static)
        self._dynamic: ModelSlot | None = None  # a candidate only the split asked for
        self._unreadable = False
        self._refused: tuple[str, int] | None = None
        self._expired: int | None = None  # the stamp of the expired split last logged

    def follow(self) -> bool:
        """Read the split and route by it (blocking: call it off the event loop).

        Returns True when the route changed, or the split's candidate swapped version.
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
        if split is not None and split.expired():
            self._note_expired(split)
            split = None
        before = self._dynamic
        if before is not None and (
            split is None or split.percent <= 0 or split.candidate != before.ref.alias
        ):
            # Kept while the split names it, even unloadable: it remembers the failed
            # version, so no reload every poll.
            self._dynamic = None
        route = Route(self.spec, self.static)
        swapped = False
        if split is not None:
            slot, swapped = self._candidate(split) if split.percent > 0 else (None, False)
            canary = Canary(candidate=split.candidate, percent=split.percent) if slot else None
            route = Route(canary, slot)
        changed = route != self.route
        if changed:
            self.route = route
            self._log(route, split)
        if before is not None and before is not self._dynamic:
            # No route holds it now; requests already routed to it keep what they took.
            self.drop(before.label)
        return changed or swapped

    def _log(self, route: Route, split: TrafficSplit | None) -> None:
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

    def _note_expired(self, split: TrafficSplit) -> None:
        if self._expired != split.stamp:  # once per split, not every poll
            logger.warning(
                "traffic split expired",
                extra={
                    "model": self.name,
                    "variant": split.candidate,
                    "percent": split.percent,
                    "expired_at": None if split.expires_at is None else str(split.expires_at),
                    "reason": "its rollout stopped renewing it; all traffic to the champion",
                },
            )
        self._expired = split.stamp

    def _candidate(self, split: TrafficSplit) -> tuple[ModelSlot | None, bool]:
        """(the loaded slot of ``NAME@candidate`` or None when it cannot take traffic,
        whether that slot swapped version just now).

        A candidate that fails to load, or cannot take the champion's requests (see
        ``registry.signature_problems``), is logged and left out: the champion keeps
        answering everything.
        """
        alias = split.candidate
        if alias == self.champion_label:
            self._refuse(alias, 0, "it is the champion's own alias")
            return None, False
        swapped = False
        if self.static is not None and self.static.ref.alias == alias:
            slot = self.static  # refreshed by the deployment with the champion
        else:
            if self._dynamic is None:
                self._dynamic = self.new_slot(alias)
            slot = self._dynamic
            # Loads it the first time, follows its alias after; a failure is logged once.
            swapped = slot.refresh()
        servable = slot.current
        if servable is None or slot.load_error is not None:
            return None, False  # ModelSlot.refresh logged why
        try:
            self.check(slot)
        except ConfigError as exc:
            self._refuse(alias, servable.version, exc.message)
            return None, False
        return slot, swapped

    def _refuse(self, alias: str, version: int, why: str) -> None:
        if self._refused != (alias, version):  # once, not every poll
            logger.error(
                "traffic split refused",
                extra={"model": self.name, "variant": alias, "version": version, "reason": why},
            )
        self._refused = (alias, version)
