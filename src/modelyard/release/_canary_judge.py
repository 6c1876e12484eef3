"""Judging one canary step: the candidate version's traffic in the step's window; and
what a rollout reports (each step as judged, the alert on a breach, how it ended).

Everything comes from the prediction log, selected by version (the rollout refuses a
candidate that shares its version with the champion, so the version alone tells the
candidate's requests apart, failed ones included: the server charges a failure to
the variant that was routed to). Latency p99 and error rate are
``monitoring.slo_values``; drift is ``monitoring.window_drift`` against the
candidate's own reference profile, as the share of its input columns that drifted.
Drift follows the monitor's sample-size rule (``monitoring.SampleSize``): a step with
fewer rows than the minimum is "not enough data" and drift is not judged there. The
minimum is ``[release.canary] min_drift_rows`` when set, else the workspace's
``monitoring.min_rows`` (both 200 by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.monitoring import Alert, SampleSize, slo_values, window_drift
from modelyard.registry import ModelVersion, Registry
from modelyard.release._canary_config import CanarySettings

if TYPE_CHECKING:
    from modelyard.backends.predictions import PredictionLog


@dataclass(frozen=True)
class Breach:
    """One limit a step broke: ``metric`` was ``value``, the limit is ``limit``."""

    metric: str
    value: float | None
    limit: str
    why: str = ""

    def __str__(self) -> str:
        shown = "none" if self.value is None else f"{self.value:.4g}"
        said = f"{self.metric} = {shown} (limit {self.limit})"
        return f"{self.why}: {said}" if self.why else said


@dataclass(frozen=True)
class StepResult:
    """One step judged: the candidate's traffic in ``[since, until)`` and what it broke."""

    step: int
    percent: float
    since: datetime
    until: datetime
    values: Mapping[str, float | None]
    breaches: tuple[Breach, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.breaches

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "percent": self.percent,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "values": dict(self.values),
            "breaches": [str(b) for b in self.breaches],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CanaryResult:
    """How a rollout ended: ``promoted``; else rolled back on a breach, or ``aborted``
    (changed from outside), with ``reason``. Either way traffic is on the champion."""

    model: str
    candidate: str
    alias: str
    from_version: int
    to_version: int
    promoted: bool
    steps: tuple[StepResult, ...]
    reason: str | None = None
    deliveries: Mapping[str, str] = field(default_factory=dict)
    aborted: bool = False


class CanaryProgress(Protocol):
    """What a rollout reports as it goes (the CLI prints it)."""

    def started(self, step: int, of: int, percent: float, interval_s: float) -> None: ...
    def waiting(self, remaining_s: float) -> None: ...
    def judged(self, result: StepResult) -> None: ...


class QuietProgress:
    """Reports nothing: the progress of a rollout nobody watches."""

    def started(self, step: int, of: int, percent: float, interval_s: float) -> None:
        pass

    def waiting(self, remaining_s: float) -> None:
        pass

    def judged(self, result: StepResult) -> None:
        pass


def breach_alert(
    subject: str, failed: StepResult, settings: CanarySettings, reason: str, at: datetime
) -> Alert:
    """The critical alert a rollback sends: its first breach, and ``reason`` in full."""
    first = failed.breaches[0]
    return Alert(
        rule="canary",
        state="firing",
        severity="critical",
        subject=subject,
        metric=first.metric,
        value=first.value,
        condition=first.limit,
        window=f"{settings.interval_s:g}s",
        since=failed.since,
        at=at,
        description=f"release record: modelyard release history {subject.split('@')[0]}",
        summary=reason,
    )


def judge_step(
    registry: Registry,
    log: PredictionLog,
    candidate: ModelVersion,
    settings: CanarySettings,
    *,
    step: int,
    percent: float,
    since: datetime,
    until: datetime,
    sample: SampleSize | None = None,
) -> StepResult:
    """The candidate's SLOs and drift in ``[since, until)``, against ``settings``;
    ``sample`` is the workspace's sample-size rule (``SampleSize.of(ws.config)``)."""
    s = settings
    slo = slo_values(log, candidate.name, since, until, version=candidate.version)
    values: dict[str, float | None] = {
        k: slo[k] for k in ("requests", "error_rate", "latency_p50_ms", "latency_p99_ms")
    }
    requests = int(slo["requests"] or 0)
    breaches: list[Breach] = []
    # The few requests a starved step got are still evidence: a slow candidate (which
    # also starves itself of traffic) is named for its latency, not only for its volume.
    p99, errors = values["latency_p99_ms"], values["error_rate"]
    if s.max_p99_ms is not None and p99 is not None and p99 > s.max_p99_ms:
        breaches.append(Breach("latency_p99_ms", p99, f"<= {s.max_p99_ms:g}"))
    if s.max_error_rate is not None and errors is not None and errors > s.max_error_rate:
        breaches.append(Breach("error_rate", errors, f"<= {s.max_error_rate:g}"))
    if requests < s.min_requests:
        # Fail safe: a step that judged nothing must not lead to a promotion.
        breaches.append(Breach("requests", requests, f">= {s.min_requests}", "no traffic"))
        return StepResult(step, percent, since, until, values, tuple(breaches))
    notes: list[str] = []
    if s.max_drift_share is not None:
        min_rows, named = min_drift_rows(settings, sample or SampleSize())
        share, note = drift_share(registry, log, candidate, since, until, min_rows, named)
        values["drift_share"] = share
        if note:
            notes.append(note)
        if share is not None and share > s.max_drift_share:
            breaches.append(Breach("drift_share", share, f"<= {s.max_drift_share:g}"))
    return StepResult(step, percent, since, until, values, tuple(breaches), tuple(notes))


def min_drift_rows(settings: CanarySettings, sample: SampleSize) -> tuple[int, str]:
    """(the fewest rows a step needs for drift, the setting that says so):
    ``[release.canary] min_drift_rows`` where the rollout or the file set it, else the
    workspace's ``monitoring.min_rows``, so that the canary and the monitor agree."""
    if "min_drift_rows" in settings.model_fields_set:
        return settings.min_drift_rows, "min_drift_rows"
    return sample.min_rows, "monitoring.min_rows"


def drift_share(
    registry: Registry,
    log: PredictionLog,
    candidate: ModelVersion,
    since: datetime,
    until: datetime,
    min_rows: int,
    named: str = "min_drift_rows",
) -> tuple[float | None, str]:
    """(share of the candidate's input columns that drifted, why it was not judged)."""
    try:
        _, report = window_drift(
            registry, candidate.ref, log, until - since, now=until, min_rows=min_rows
        )
    except NotFoundError:
        return None, f"drift not judged: {candidate.ref} has no reference profile"
    except InvalidInputError as exc:  # no logged inputs; or the log lacks an input the
        # candidate takes and callers do not send (nullable: see registry.signature_problems)
        return None, f"drift not judged: {exc.message.split('; ')[0]}"
    if report.status != "ok" or not report.columns:
        return None, (
            f"drift not judged: {report.rows_current} rows, fewer than {named} = {min_rows}"
        )
    return len(report.drifted_columns) / len(report.columns), ""
