"""``monitor check``: evaluate every alert rule once, notify on changes, keep the history.

Each rule moves between three states, kept in the metadata store so that successive
checks (minutes apart, from cron or the scheduler) agree on them:

    ok --condition holds--> pending --held for `for`--> firing --stops holding--> ok
                                                               (a "resolved" notice)
                            firing <--next check--> undelivered
                                ok <--next check--> ok_undelivered

A firing notice that a sink could not take (after the sink's own retries: a webhook
that answers 5xx or cannot be reached) is not counted as delivered: the rule moves to
``undelivered``, the failure is in the alert history and the log, and the next check
that finds the condition still holding moves it back to ``firing`` and sends the
notice again, to the sinks that failed only. A resolved notice that a sink could not
take does the same through ``ok_undelivered``: the next check sends it again to those
sinks (until one gets it through, or the rule fires again: the new firing notice
supersedes it), so on-call is not left believing a resolved alert still fires.

A rule notifies once when it starts firing and once when it resolves; in between it is
silent however often it is checked. A state change is written with a compare-and-set
UPDATE (``WHERE state = old``), so two checks running at once notify once. A sink
that fails is recorded in the event and does not stop the other sinks or rules. Every
value computed on the way (drift per column, quality, SLOs) is kept as a time series.

A window with too few rows (``monitoring.min_rows``) or labels (``monitoring.min_labels``)
is "not enough data": its value is None and the rule never fires for it, whatever
``on_no_data`` says (that is for an empty window).

The change is committed before the notification is sent, so notices are at most once:
a check killed between the two loses that notice, while the rule's state (and
``monitor alerts``) still shows it firing. Sending first would page twice instead
whenever two checks raced, which the compare-and-set exists to prevent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.errors import InvalidInputError, ModelyardError
from modelyard.monitoring._deliver import deliver
from modelyard.monitoring._drift import drift
from modelyard.monitoring._quality import joined, quality, scores
from modelyard.monitoring._rules import QUALITY_METRICS, Alerting, AlertRule
from modelyard.monitoring._sample import SampleSize
from modelyard.monitoring._series import drift_values, record_metrics
from modelyard.monitoring._sinks import Alert
from modelyard.monitoring._slo import feature_freshness, slo_values
from modelyard.monitoring._window import resolve_model, window_inputs

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore
    from modelyard.backends.predictions import PredictionLog
    from modelyard.features import FeatureStore
    from modelyard.registry import Registry

State = Literal["ok", "pending", "firing", "undelivered", "ok_undelivered"]
FIRING: tuple[State, ...] = ("firing", "undelivered")  # the condition held long enough

logger = logging.getLogger(__name__)


@dataclass
class RuleResult:
    """What one rule did in one check."""

    rule: AlertRule
    value: float | None = None
    state: State = "ok"
    notified: Literal["firing", "resolved"] | None = None
    deliveries: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    # Why there is no value although the window has some data ("not enough data: …").
    note: str = ""


@dataclass
class Checker:
    """Evaluates rules against one workspace's log, registry and feature store."""

    store: MetadataStore
    registry: Registry
    log: PredictionLog
    features: FeatureStore | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The fewest rows and labels a window needs (the workspace's: SampleSize.of(ws.config)).
    sample: SampleSize = field(default_factory=SampleSize)
    _values: dict[tuple[Any, ...], dict[str, float | None]] = field(default_factory=dict)
    _notes: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def run(self, alerting: Alerting, names: list[str] | None = None) -> list[RuleResult]:
        rules = [alerting.rule(n) for n in names] if names else list(alerting.rules)
        results = []
        for rule in rules:
            result = RuleResult(rule)
            try:
                result.value = self.value(rule)
                result.note = self._notes.get(self._key(rule), "")
            except ModelyardError as exc:
                # One broken rule (a deleted alias, say) must not silence the others.
                result.error = exc.message
                results.append(result)
                continue
            self._advance(result, alerting)
            results.append(result)
        return results

    # -- values ----------------------------------------------------------------------------
    def value(self, rule: AlertRule) -> float | None:
        """The rule's metric now; None when its window has no data."""
        if rule.metric == "slo.feature_freshness_s":
            return self._freshness(rule)
        family = rule.family
        key = self._key(rule)
        if key not in self._values:
            compute = {"drift": self._drift, "quality": self._quality, "slo": self._slo}[family]
            self._values[key], self._notes[key] = compute(rule)
        values = self._values[key]
        if (
            rule.metric not in values
            and family == "drift"
            and "drift.share" in values
            and not self._notes[key]
        ):
            column = rule.metric.split(".", 2)[2]
            raise InvalidInputError(
                f"alert rule {rule.name!r}: {rule.model} has no input column {column!r}"
            )
        return values.get(rule.metric)

    @staticmethod
    def _key(rule: AlertRule) -> tuple[Any, ...]:
        """Rules that share this compute their values once per check."""
        return (rule.family, rule.model, rule.window, json.dumps(rule.thresholds, sort_keys=True))

    def _drift(self, rule: AlertRule) -> tuple[dict[str, float | None], str]:
        assert rule.model is not None
        version, reference, current = window_inputs(
            self.registry, rule.model, self.log, rule.span, self.now
        )
        if current.empty:
            return {}, ""  # no traffic in the window: no data
        report = drift(
            reference, current, thresholds=rule.thresholds or None, min_rows=self.sample.min_rows
        )
        values = drift_values(report)
        self._record(version.name, values, rule, version=version.version)
        return dict(values), report.note

    def _quality(self, rule: AlertRule) -> tuple[dict[str, float | None], str]:
        assert rule.model is not None
        name, version = resolve_model(self.registry, rule.model)
        frame = joined(self.log, name, since=self.now - rule.span, version=version)
        if frame.empty:
            return {}, ""
        for row in quality(frame, min_labels=self.sample.min_labels):
            if row["status"] != "ok":
                continue
            found = _prefixed({k: v for k, v in row.items() if k in QUALITY_METRICS})
            self._record(name, found, rule, version=row["version"], variant=row["variant"])
        short = self.sample.short_of_labels(len(frame))
        if short:
            return {"quality.rows": float(len(frame))}, short
        return _prefixed(scores(frame)), ""

    def _slo(self, rule: AlertRule) -> tuple[dict[str, float | None], str]:
        assert rule.model is not None
        name, version = resolve_model(self.registry, rule.model)
        values = slo_values(self.log, name, self.now - rule.span, self.now, version=version)
        scored = {f"slo.{k}": v for k, v in values.items()}
        self._record(name, scored, rule, version=version)
        return scored, ""

    def _freshness(self, rule: AlertRule) -> float | None:
        if self.features is None:
            raise InvalidInputError("feature freshness needs the workspace's feature store")
        view = rule.view
        if view is None:
            assert rule.model is not None
            binding = self.registry.get(rule.model).features
            if binding is None:
                raise InvalidInputError(
                    f"alert rule {rule.name!r}: {rule.model} reads no online features; "
                    'name the feature view with view = "NAME"'
                )
            view = binding.service
        age = feature_freshness(self.features, view, self.now)
        subject = rule.model.split("@")[0].split("/")[0] if rule.model else f"view:{view}"
        self._record(subject, {"slo.feature_freshness_s": age}, rule)
        return age

    def _record(
        self,
        subject: str,
        values: dict[str, float | None] | dict[str, float],
        rule: AlertRule,
        *,
        version: int | None = None,
        variant: str | None = None,
    ) -> None:
        record_metrics(
            self.store,
            subject,
            values,
            window=rule.span,
            version=version,
            variant=variant,
            at=self.now,
        )

    # -- states ----------------------------------------------------------------------------
    def _advance(self, result: RuleResult, alerting: Alerting) -> None:
        rule = result.rule
        if result.value is not None:
            holds = rule.holds(result.value)
        else:  # too few rows or labels never fire; an empty window fires if asked to
            holds = rule.on_no_data == "firing" and not result.note
        now_us = _time.to_us(self.now, "now")
        while True:  # a lost compare-and-set means another check moved it: look again
            state, since = self._state(rule.name, now_us)
            target, since_new = self._next(rule, holds, state, since, now_us)
            if self._move(rule.name, (state, since), (target, since_new), result.value, now_us):
                break
        result.state = target
        if target == "firing" and state != "firing":
            self._fire(result, alerting, state, since_new, now_us)
        elif target == "ok" and state in FIRING:
            self._resolve(result, alerting, since, rule.sinks, now_us)
        elif state == "ok_undelivered":  # ok or pending: the firing it reports did end
            self._resolve(result, alerting, since, self._unsent(rule, "resolved"), now_us)

    def _fire(
        self, result: RuleResult, alerting: Alerting, was: State, since: int, now_us: int
    ) -> None:
        """Send the firing notice (again, to the sinks that missed it, after
        ``undelivered``); if a sink did not take it, the rule is ``undelivered``."""
        rule = result.rule
        sinks = self._unsent(rule) if was == "undelivered" else rule.sinks
        if sinks:
            self._notify(result, alerting, "firing", since, sinks)
        failed = {k: v for k, v in result.deliveries.items() if v != "sent"}
        for sink, why in failed.items():
            logger.warning(
                "alert %s: sink %s did not take the firing notice (%s); the next check "
                "sends it again",
                rule.name,
                sink,
                why,
            )
        if failed and self._move(
            rule.name, ("firing", since), ("undelivered", since), result.value, now_us
        ):
            result.state = "undelivered"

    def _resolve(
        self,
        result: RuleResult,
        alerting: Alerting,
        fired_since: int,
        sinks: tuple[str, ...],
        now_us: int,
    ) -> None:
        """Send the resolved notice; if a sink did not take it and the rule is ``ok``, it
        becomes ``ok_undelivered`` (keeping when it began firing, for the resend).

        A rule already ``pending`` again gets this one last try: its next firing notice
        will tell on-call what matters.
        """
        rule = result.rule
        if sinks:
            self._notify(result, alerting, "resolved", fired_since, sinks)
        failed = {k: v for k, v in result.deliveries.items() if v != "sent"}
        retry = result.state == "ok"
        for sink, why in failed.items():
            logger.warning(
                "alert %s: sink %s did not take the resolved notice (%s)%s",
                rule.name,
                sink,
                why,
                "; the next check sends it again" if retry else "",
            )
        if failed and retry:
            moved: tuple[State, int] = ("ok_undelivered", fired_since)
            if self._move(rule.name, ("ok", now_us), moved, result.value, now_us):
                result.state = "ok_undelivered"

    @staticmethod
    def _next(
        rule: AlertRule, holds: bool, state: State, since: int, now_us: int
    ) -> tuple[State, int]:
        if not holds:
            return "ok", now_us
        if state == "undelivered":
            return "firing", since  # still holding: send what did not get through
        if state in ("ok", "ok_undelivered"):  # firing again supersedes the resolved notice
            return ("firing" if rule.hold == timedelta(0) else "pending"), now_us
        if state == "pending" and now_us - since >= rule.hold.total_seconds() * 1e6:
            return "firing", since
        return state, since

    def _state(self, rule: str, now_us: int) -> tuple[State, int]:
        table = t.alert_states
        with self.store.read() as conn:
            row = conn.execute(
                select(table.c.state, table.c.since).where(table.c.rule == rule)
            ).first()
        if row is not None:
            return row[0], int(row[1])
        try:
            with self.store.write() as conn:
                conn.execute(
                    insert(table),
                    [{"rule": rule, "state": "ok", "since": now_us, "updated_at": now_us}],
                )
        except IntegrityError:  # another check inserted it first
            return self._state(rule, now_us)
        return "ok", now_us

    def _move(
        self,
        rule: str,
        old: tuple[State, int],
        new: tuple[State, int],
        value: float | None,
        now_us: int,
    ) -> bool:
        """Compare-and-set: True if this check made the change (or there was none)."""
        table = t.alert_states
        with self.store.write() as conn:
            changed = conn.execute(
                update(table)
                .where(table.c.rule == rule, table.c.state == old[0], table.c.since == old[1])
                .values(state=new[0], since=new[1], value=value, updated_at=now_us)
            )
        return bool(changed.rowcount == 1)

    def _notify(
        self,
        result: RuleResult,
        alerting: Alerting,
        state: Literal["firing", "resolved"],
        since_us: int,
        sinks: tuple[str, ...],
    ) -> None:
        rule = result.rule
        alert = Alert(
            rule=rule.name,
            state=state,
            severity=rule.severity,
            subject=rule.subject,
            metric=rule.metric,
            value=result.value,
            condition=rule.condition,
            window=rule.window,
            since=_time.to_datetime(since_us),
            at=self.now,
            description=rule.description,
        )
        result.deliveries = deliver(self.store, alerting, alert, sinks)
        result.notified = state

    def _unsent(
        self, rule: AlertRule, state: Literal["firing", "resolved"] = "firing"
    ) -> tuple[str, ...]:
        """The rule's sinks that its last ``state`` notice did not reach."""
        table = t.alert_events
        query = (
            select(table.c.deliveries)
            .where(table.c.rule == rule.name, table.c.state == state)
            .order_by(table.c.id.desc())
            .limit(1)
        )
        with self.store.read() as conn:
            last = conn.execute(query).scalar()
        if last is None:
            return rule.sinks
        # A resend names only the sinks it retried: those that took the notice before
        # are absent from it, and stay served.
        return tuple(s for s in rule.sinks if s in last and last[s] != "sent")


def _prefixed(quality: dict[str, Any]) -> dict[str, float | None]:
    return {f"quality.{k}": float(x) for k, x in quality.items()}


def alert_history(
    store: MetadataStore, *, rule: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Notifications sent, newest first."""
    table = t.alert_events
    query = select(table).order_by(table.c.at.desc(), table.c.id.desc()).limit(limit)
    if rule is not None:
        query = query.where(table.c.rule == rule)
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["at"] = _time.to_datetime(row["at"])
    return rows


def alert_states(store: MetadataStore) -> dict[str, dict[str, Any]]:
    """The current state of every rule that has been checked, by rule name."""
    table = t.alert_states
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(table))]
    return {r["rule"]: {**r, "since": _time.to_datetime(r["since"])} for r in rows}
