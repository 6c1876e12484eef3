"""Canary rollout: shift live traffic to a candidate in steps, judge each step from the
prediction log, promote when every step is healthy, roll back on the first breach.

The rollout talks to no server. It writes the model's traffic split
(``registry.set_traffic``), which every replica of every server follows at its next
alias poll, and it judges the candidate from the shared prediction log (see
``_canary_judge.py``). So one command drives one server or fifty, from any machine
that sees the workspace.

Too little candidate traffic in a step (fewer than ``min_requests``) is a breach with
the reason "no traffic": the rollout fails safe and rolls back, since a step that
judged nothing must not lead to a promotion. The usual causes are a quiet model (raise
the interval), no server following the split, or a server that refused the candidate
(see its "traffic split refused" log line).

Whatever ends a rollout early (a breach, Ctrl-C, an error, the split or an alias
changed by someone else) puts traffic back on the champion, and every start, step,
promotion, rollback and abort is a release record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError
from modelyard.monitoring import Alert, deliver
from modelyard.registry import ModelRef, ModelVersion, clear_traffic, get_traffic, set_traffic
from modelyard.release._canary_config import CanarySettings, canary_settings
from modelyard.release._canary_judge import StepResult, judge_step
from modelyard.release._evaluate import check_compatible
from modelyard.release._records import current_actor, record

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

TICK_S = 1.0  # how often a waiting rollout checks that its split still stands


@dataclass(frozen=True)
class CanaryResult:
    """How a rollout ended: ``promoted``, or rolled back with ``reason``."""

    model: str
    candidate: str
    alias: str
    from_version: int
    to_version: int
    promoted: bool
    steps: tuple[StepResult, ...]
    reason: str | None = None
    deliveries: Mapping[str, str] = field(default_factory=dict)


class CanaryProgress(Protocol):
    """What a rollout reports as it goes (the CLI prints it)."""

    def started(self, step: int, of: int, percent: float, interval_s: float) -> None: ...
    def waiting(self, remaining_s: float) -> None: ...
    def judged(self, result: StepResult) -> None: ...


class _Quiet:
    def started(self, step: int, of: int, percent: float, interval_s: float) -> None:
        pass

    def waiting(self, remaining_s: float) -> None:
        pass

    def judged(self, result: StepResult) -> None:
        pass


class _Stopped(Exception):
    """The split or an alias was changed outside this rollout."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def run_canary(
    ws: Workspace,
    name: str,
    *,
    candidate: str = "staging",
    to: str = "production",
    steps: Sequence[float] | None = None,
    interval_s: float | None = None,
    max_p99_ms: float | None = None,
    max_error_rate: float | None = None,
    max_drift_share: float | None = None,
    min_requests: int | None = None,
    min_drift_rows: int | None = None,
    sinks: Sequence[str] | None = None,
    actor: str | None = None,
    progress: CanaryProgress | None = None,
    clock: Callable[[], datetime] = _utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryResult:
    """Roll ``name@candidate`` out step by step, then point ``name@to`` at it.

    Options left as None come from ``[release.canary]`` in modelyard.toml, else the
    defaults of ``CanarySettings``. Bad input raises before anything moves. A breach
    returns a result with ``promoted=False`` (traffic is back on the champion and the
    alert is sent); Ctrl-C and errors re-raise after putting traffic back.
    """
    given = {
        "steps": None if steps is None else tuple(steps),
        "interval_s": interval_s,
        "max_p99_ms": max_p99_ms,
        "max_error_rate": max_error_rate,
        "max_drift_share": max_drift_share,
        "min_requests": min_requests,
        "min_drift_rows": min_drift_rows,
        "sinks": None if sinks is None else tuple(sinks),
    }
    settings = canary_settings(ws.config.tables.get("release", {}), given)
    rollout = _Rollout(ws, name, candidate, to, settings, actor or current_actor(), clock, sleep)
    return rollout.run(progress or _Quiet())


def stop_canary(ws: Workspace, name: str, *, actor: str | None = None) -> str | None:
    """Clear ``name``'s traffic split (a running rollout then aborts); None if none was set."""
    split = clear_traffic(ws.registry, name)
    if split is None:
        return None
    who = actor or current_actor()
    record(
        ws.metadata,
        model=name,
        action="canary-aborted",
        actor=who,
        alias=split.candidate,
        reason=f"stopped by {who}",
        details={"percent": split.percent},
    )
    return split.describe()


class _Rollout:
    def __init__(
        self,
        ws: Workspace,
        name: str,
        candidate: str,
        to: str,
        settings: CanarySettings,
        actor: str,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> None:
        self.ws = ws
        self.name = name
        self.candidate = candidate
        self.to = to
        self.settings = settings
        self.actor = actor
        self.clock = clock
        self.sleep = sleep
        self.versions = (0, 0)  # (candidate, champion), resolved by run()
        self.percent = 0.0  # the split this rollout wrote last
        self.done: list[StepResult] = []

    # -- before anything moves -------------------------------------------------------------
    def _check(self) -> tuple[ModelVersion, ModelVersion]:
        """(candidate, champion), or a one-line error: nothing has moved yet."""
        unknown = [s for s in self.settings.sinks if s not in self.ws.alerting.sinks]
        if unknown:
            known = ", ".join(sorted(self.ws.alerting.sinks))
            raise ConfigError(
                f"alert sink '{unknown[0]}' is not declared (sinks: {known}); "
                f"add [alerts.sinks.{unknown[0]}] to modelyard.toml or pick another"
            )
        if self.candidate == self.to:
            raise InvalidInputError(
                f"candidate and target are both '{self.to}'; roll out another alias, "
                "e.g. --candidate staging"
            )
        registry = self.ws.registry
        cand = registry.get(ModelRef.parse(f"{self.name}@{self.candidate}"))
        champ = registry.get(ModelRef.parse(f"{self.name}@{self.to}"))
        if cand.version == champ.version:
            raise InvalidInputError(
                f"{self.name}@{self.candidate} is version {cand.version}, which "
                f"{self.name}@{self.to} already serves; point {self.candidate} at a new "
                f"version with 'modelyard models alias {self.name} {self.candidate} VERSION'"
            )
        check_compatible(cand, champ)
        running = get_traffic(registry, self.name)
        if running is not None:
            raise ConflictError(
                f"a canary of '{self.name}' is already running ({running.describe()}); "
                f"wait for it, or stop it with 'modelyard release canary {self.name} --stop'"
            )
        return cand, champ

    # -- the rollout ---------------------------------------------------------------------
    def run(self, progress: CanaryProgress) -> CanaryResult:
        cand, champ = self._check()
        self.versions = (cand.version, champ.version)
        steps = self.settings.steps
        started = False
        try:
            for index, percent in enumerate(steps, start=1):
                # The first write refuses if another rollout claimed the model meanwhile.
                set_traffic(
                    self.ws.registry, self.name, self.candidate, percent, exclusive=index == 1
                )
                started, self.percent = True, percent
                since = self.clock()
                self._record(
                    "canary-step", details={"step": index, "of": len(steps), "percent": percent}
                )
                progress.started(index, len(steps), percent, self.settings.interval_s)
                self._wait(since + timedelta(seconds=self.settings.interval_s), percent, progress)
                self._aliases_unmoved()
                result = judge_step(
                    self.ws.registry,
                    self.ws.state_dir / "predictions",
                    cand,
                    self.settings,
                    step=index,
                    percent=percent,
                    since=since,
                    until=self.clock(),
                )
                self.done.append(result)
                progress.judged(result)
                if not result.healthy:
                    return self._roll_back(result)
            return self._promote()
        except _Stopped as exc:
            self._abort(str(exc))
            raise ConflictError(f"{exc}; traffic is back on {self.name}@{self.to}") from None
        except BaseException as exc:  # Ctrl-C included: traffic goes back before we leave
            if started:
                self._abort(_why(exc))
            raise

    def _wait(self, deadline: datetime, percent: float, progress: CanaryProgress) -> None:
        """Sleep in ticks: Ctrl-C lands promptly and a stopped rollout is noticed."""
        while (left := (deadline - self.clock()).total_seconds()) > 0:
            progress.waiting(left)
            self.sleep(min(TICK_S, left))
            split = get_traffic(self.ws.registry, self.name)
            if split is None or (split.candidate, split.percent) != (self.candidate, percent):
                now = "cleared" if split is None else f"changed to {split.describe()}"
                raise _Stopped(f"the traffic split of '{self.name}' was {now} outside this canary")

    def _aliases_unmoved(self) -> None:
        """Judging a version that is no longer the candidate would promote the wrong one."""
        for alias, expected in zip((self.candidate, self.to), self.versions, strict=True):
            try:
                now: int | None = self.ws.registry.get(ModelRef(self.name, alias=alias)).version
            except NotFoundError:
                now = None
            if now != expected:
                raise _Stopped(
                    f"'{self.name}@{alias}' moved from version {expected} to {now} during the "
                    "canary; start it again to judge the new version"
                )

    # -- endings -------------------------------------------------------------------------
    def _roll_back(self, failed: StepResult) -> CanaryResult:
        clear_traffic(self.ws.registry, self.name)
        cand, champ = self.versions
        named = "; ".join(str(b) for b in failed.breaches)
        reason = (
            f"canary of {self.name} v{cand} rolled back at {failed.percent:g}%: {named}; "
            f"traffic is back on {self.name}@{self.to} v{champ}"
        )
        first = failed.breaches[0]
        alert = Alert(
            rule="canary",
            state="firing",
            severity="critical",
            subject=f"{self.name}@{self.candidate}",
            metric=first.metric,
            value=first.value,
            condition=first.limit,
            window=f"{self.settings.interval_s:g}s",
            since=failed.since,
            at=self.clock(),
            description=f"release record: modelyard release history {self.name}",
            summary=reason,
        )
        deliveries = deliver(self.ws.metadata, self.ws.alerting, alert, self.settings.sinks)
        self._record(
            "canary-rollback",
            passed=False,
            reason=reason,
            details={**self._evidence(), "deliveries": deliveries},
        )
        return self._result(False, reason, deliveries)

    def _promote(self) -> CanaryResult:
        self._aliases_unmoved()
        cand, _ = self.versions
        # Alias first, then the split: servers load the new champion while the candidate
        # still takes the traffic, so no request goes back to the old version meanwhile.
        self.ws.registry.set_alias(self.name, self.to, cand)
        clear_traffic(self.ws.registry, self.name)
        self._record("canary-promote", alias=self.to, passed=True, details=self._evidence())
        return self._result(True, None, {})

    def _abort(self, reason: str) -> None:
        """Put traffic back on the champion (if the split is still ours) and record why."""
        try:
            split = get_traffic(self.ws.registry, self.name)
            if split is not None and (split.candidate, split.percent) == (
                self.candidate,
                self.percent,
            ):
                clear_traffic(self.ws.registry, self.name)
            self._record("canary-aborted", reason=reason, details=self._evidence())
        except Exception:
            pass  # the store is down too: the error being raised is the one to report

    def _evidence(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "settings": self.settings.model_dump(mode="json"),
            "steps": [r.to_json_dict() for r in self.done],
        }

    def _record(self, action: str, *, alias: str | None = None, **fields: Any) -> None:
        cand, champ = self.versions
        record(
            self.ws.metadata,
            model=self.name,
            action=action,
            actor=self.actor,
            alias=alias or self.candidate,
            from_version=champ,
            to_version=cand,
            **fields,
        )

    def _result(self, promoted: bool, reason: str | None, sent: Mapping[str, str]) -> CanaryResult:
        cand, champ = self.versions
        return CanaryResult(
            self.name,
            self.candidate,
            self.to,
            champ,
            cand,
            promoted,
            tuple(self.done),
            reason,
            dict(sent),
        )
