"""Canary rollout: shift live traffic to a candidate in steps, judge each step from the
prediction log, promote when every step is healthy, roll back on the first breach.

The rollout talks to no server. It writes the model's traffic split
(``registry.set_traffic``), which every replica of every server follows at its next
alias poll, and it judges the candidate from the shared prediction log (see
``_canary_judge.py``). So one command drives one server or fifty, from any machine
that sees the workspace.

The rollout holds its split on a lease (``registry.STALE_AFTER_S``) that it renews
every ``RENEW_EVERY_S``: if the process dies (SIGKILL, a CI timeout), servers go back
to the champion once the lease runs out, and the next rollout takes the split over
(recorded as ``canary-takeover``). Every write after the first is a compare-and-set
on the split this rollout wrote last, and the promotion moves the alias and removes
the split in one transaction, only if both are as the rollout left them: a split
cleared by ``--stop`` stays cleared, and a stopped rollout never promotes.

Too little candidate traffic in a step (fewer than ``min_requests``) is a breach with
the reason "no traffic": the rollout fails safe and rolls back, since a step that
judged nothing must not lead to a promotion. The usual causes are a quiet model (raise
the interval), no server following the split, or a server that refused the candidate
(see its "traffic split refused" log line).

How a rollout ends: promoted; rolled back on a breach (an alert is sent); aborted
because the split or an alias was changed from outside (``CanaryResult.aborted``); or
interrupted (Ctrl-C, an error: re-raised). Each early end puts traffic back on the
champion, and every start, step, promotion, rollback and abort is a release record,
with the rollout's id in its details.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConflictError, NotFoundError
from modelyard.monitoring import SampleSize, deliver
from modelyard.registry import (
    STALE_AFTER_S,
    AliasMove,
    ModelRef,
    TrafficSplit,
    claim_traffic,
    clear_traffic,
    get_traffic,
    set_traffic,
)
from modelyard.release._canary_config import CanarySettings, canary_settings, preflight
from modelyard.release._canary_gates import CanaryGates, enforce, judge_gates
from modelyard.release._canary_judge import (
    CanaryProgress,
    CanaryResult,
    QuietProgress,
    StepResult,
    breach_alert,
    judge_step,
)
from modelyard.release._records import actor_of, record, release_history, write_record
from modelyard.release._steps import CheckProgress

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from modelyard.workspace import Workspace

TICK_S = 1.0  # how often a waiting rollout checks that its split still stands
RENEW_EVERY_S = 5.0  # how often it renews its split's lease (a dozen renewals per lease)


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
    gates: CanaryGates | None = None,
    check_progress: CheckProgress | None = None,
    clock: Callable[[], datetime] = _utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryResult:
    """Roll ``name@candidate`` out step by step, then point ``name@to`` at it.

    Options left as None come from ``[release.canary]`` in modelyard.toml, else the
    defaults of ``CanarySettings``. Bad input raises before anything moves. Before the
    first step the release gates run as ``promote`` runs them (``gates`` adds gates and
    names the holdout; ``check_progress`` is told of each step of that check): a failed
    gate raises ``ReleaseBlockedError`` with nothing moved, unless ``gates.force``. A breach
    returns a result with ``promoted=False`` (traffic is back on the champion and the
    alert is sent); a change from outside returns one with ``aborted=True``; Ctrl-C
    and errors re-raise after putting traffic back.
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
    judging = gates or CanaryGates()
    judging.check()
    rollout = _Rollout(ws, name, candidate, to, settings, actor_of(ws, actor), clock, sleep)
    return rollout.run(progress or QuietProgress(), judging, check_progress)


def stop_canary(ws: Workspace, name: str, *, actor: str | None = None) -> str | None:
    """Clear ``name``'s traffic split (a running rollout then aborts); None if none was set."""
    split = clear_traffic(ws.registry, name)
    if split is None:
        return None
    who = actor_of(ws, actor)
    dead = " (its lease had run out: the rollout had died)" if split.expired() else ""
    record(
        ws.metadata,
        model=name,
        action="canary-aborted",
        actor=who,
        alias=split.candidate,
        reason=f"stopped by {who}{dead}",
        details={"percent": split.percent},
    )
    return split.describe() + dead


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
        self.id = uuid.uuid4().hex[:12]  # in every record's details: one rollout's records
        self.versions = (0, 0)  # (candidate, champion), resolved by run()
        self.split: TrafficSplit | None = None  # the split this rollout wrote last
        self.started = False  # the split was claimed: an early end must record an abort
        self.promoting = False
        self.done: list[StepResult] = []

    # -- the rollout ---------------------------------------------------------------------
    def run(
        self, progress: CanaryProgress, gates: CanaryGates, checking: CheckProgress | None
    ) -> CanaryResult:
        cand, champ = preflight(self.ws, self.name, self.candidate, self.to, self.settings)
        self.versions = (cand.version, champ.version)
        report = judge_gates(
            self.ws,
            self.name,
            cand,
            champ,
            candidate_alias=self.candidate,
            champion_alias=self.to,
            options=gates,
            progress=checking,
        )
        if report is not None:
            enforce(report, gates, cand.ref, self._record)  # raises when blocked
            try:  # the check took a while: the split must route to the version it judged
                self._versions_stand()
            except _Stopped as exc:
                raise ConflictError(str(exc)) from None
        steps = self.settings.steps
        try:
            for index, percent in enumerate(steps, start=1):
                self._step_to(percent)
                since = self.clock()
                self._record(
                    "canary-step", details={"step": index, "of": len(steps), "percent": percent}
                )
                progress.started(index, len(steps), percent, self.settings.interval_s)
                self._wait(since + timedelta(seconds=self.settings.interval_s), progress)
                until = self.clock()
                # Other replicas' rows of the step reach the shared log within its delay.
                log = self.ws.predictions
                self._wait(until + timedelta(seconds=log.settle_s), progress)
                self._versions_stand()
                result = judge_step(
                    self.ws.registry,
                    log,
                    cand,
                    self.settings,
                    step=index,
                    percent=percent,
                    since=since,
                    until=until,
                    sample=SampleSize.of(self.ws.config),
                )
                self.done.append(result)
                progress.judged(result)
                if not result.healthy:
                    return self._roll_back(result)
                self._renew()  # judging read the log for a while: a full lease from here
            return self._promote()
        except _Stopped as exc:
            self._abort(str(exc))
            why = f"{exc}; traffic is back on {self.name}@{self.to}"
            return self._result(False, why, {}, aborted=True)
        except BaseException as exc:  # Ctrl-C included: traffic goes back before we leave
            if self.promoting and self._promoted():
                # It landed after the promotion committed: too late to stop it, so the
                # rollout reports what happened (and recorded), not an abort.
                return self._result(True, None, {})
            if self.started:  # else nothing moved, and there is nothing to record
                self._abort(_why(exc))
            raise

    def _step_to(self, percent: float) -> None:
        """The first step claims the split (refused if another rollout holds it); later
        steps compare-and-set the split this rollout wrote last."""
        if self.split is None:
            self.split, stale = claim_traffic(
                self.ws.registry, self.name, self.candidate, percent, ttl_s=STALE_AFTER_S
            )
            self.started = True
            if stale is not None:
                self._record(
                    "canary-takeover",
                    reason=f"took over {stale.describe()}, whose rollout stopped renewing it",
                    details={"stale": {"percent": stale.percent, "candidate": stale.candidate}},
                )
            return
        try:
            self.split = set_traffic(
                self.ws.registry,
                self.name,
                self.candidate,
                percent,
                expect=self.split,
                ttl_s=STALE_AFTER_S,
            )
        except ConflictError as exc:
            raise _Stopped(exc.message) from None

    def _renew(self) -> None:
        assert self.split is not None
        self._step_to(self.split.percent)

    def _wait(self, deadline: datetime, progress: CanaryProgress) -> None:
        """Sleep in ticks: Ctrl-C lands promptly, a stopped rollout is noticed, and the
        lease is renewed."""
        renewed = self.clock()
        while (left := (deadline - self.clock()).total_seconds()) > 0:
            progress.waiting(left)
            self.sleep(min(TICK_S, left))
            if (self.clock() - renewed).total_seconds() >= RENEW_EVERY_S:
                self._renew()  # a compare-and-set: it notices a stop too
                renewed = self.clock()
                continue
            split = get_traffic(self.ws.registry, self.name)
            if split != self.split:
                now = "cleared" if split is None else f"changed to {split.describe()}"
                raise _Stopped(f"the traffic split of '{self.name}' was {now} outside this canary")

    def _versions_stand(self) -> None:
        """Stop early when an alias moved: the step would judge, or the promotion replace,
        a version other than the one this rollout started with. (An early notice only:
        the promotion itself is a compare-and-set.)"""
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
        if self.split is not None:
            clear_traffic(self.ws.registry, self.name, expect=self.split)  # if still ours
            self.split = None
        cand, champ = self.versions
        named = "; ".join(str(b) for b in failed.breaches)
        reason = (
            f"canary of {self.name} v{cand} rolled back at {failed.percent:g}%: {named}; "
            f"traffic is back on {self.name}@{self.to} v{champ}"
        )
        subject = f"{self.name}@{self.candidate}"
        alert = breach_alert(subject, failed, self.settings, reason, self.clock())
        deliveries = deliver(self.ws.metadata, self.ws.alerting, alert, self.settings.sinks)
        self._record(
            "canary-rollback",
            passed=False,
            reason=reason,
            details={**self._evidence(), "deliveries": deliveries},
        )
        return self._result(False, reason, deliveries)

    def _promote(self) -> CanaryResult:
        """Move ``to`` to the judged version, remove the split and record it, in one
        transaction, only if ``to`` and the split are as this rollout left them.

        Servers follow the alias before the split in each poll, so they load the new
        champion while the candidate still takes the traffic, and no request goes back
        to the old version meanwhile.
        """
        cand, champ = self.versions

        def write(conn: Connection, move: AliasMove) -> None:
            details = {**self._evidence(), "rollout": self.id}
            write_record(
                conn,
                model=self.name,
                action="canary-promote",
                actor=self.actor,
                alias=self.to,
                from_version=move.from_version,
                to_version=move.to_version,
                passed=True,
                details=details,
            )

        self.promoting = True
        try:
            self.ws.registry.move_alias(
                self.name, self.to, cand, expect=champ, clear_split=self.split, also=write
            )
        except ConflictError as exc:
            raise _Stopped(exc.message) from None
        self.split = None
        return self._result(True, None, {})

    def _promoted(self) -> bool:
        """True when this rollout's promotion committed (its record is the proof)."""
        try:
            recent = release_history(self.ws.metadata, self.name, limit=20)
        except Exception:
            return False  # the store is down: nothing can be shown to have committed
        return any(
            r.action == "canary-promote" and r.details.get("rollout") == self.id for r in recent
        )

    def _abort(self, reason: str) -> None:
        """Put traffic back on the champion (if the split is still ours) and record why."""
        try:
            if self.split is not None:
                clear_traffic(self.ws.registry, self.name, expect=self.split)
                self.split = None
            self._record("canary-aborted", reason=reason, details=self._evidence())
        except Exception:
            pass  # the store is down too: the error being raised is the one to report

    def _evidence(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "settings": self.settings.model_dump(mode="json"),
            "steps": [r.to_json_dict() for r in self.done],
        }

    def _record(
        self, action: str, *, details: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        cand, champ = self.versions
        record(
            self.ws.metadata,
            model=self.name,
            action=action,
            actor=self.actor,
            alias=self.candidate,
            from_version=champ,
            to_version=cand,
            details={**(details or {}), "rollout": self.id},
            **fields,
        )

    def _result(
        self,
        promoted: bool,
        reason: str | None,
        sent: Mapping[str, str],
        *,
        aborted: bool = False,
    ) -> CanaryResult:
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
            aborted,
        )
