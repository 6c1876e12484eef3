"""The prediction log's health, for ``/metrics``, ``/readyz`` and alerts.

    modelyard_prediction_log_up                       1 while the log writes, else 0
    modelyard_prediction_log_failures_total{outcome}  predictions it could not record:
                                                      rejected (answered 503) or unlogged

A replica whose log cannot write and whose policy is ``predictions.on_failure =
"reject"`` answers nothing, so it is not ready; with "serve_unlogged" it still answers
and stays ready, and the gauge (and the alert on it) tells. With ``--workers N`` the
gauge keeps the lowest live value, so one failing worker shows. The gauge is refreshed
on each event of the log and on every scrape of ``/metrics``: a writer thread that
stopped or a write that hangs sends no event.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelyard.backends.predictions import PredictionLog


class PredictionLogHealth:
    """Keeps the gauges of ``log`` current and answers the readiness check for it."""

    def __init__(self, log: PredictionLog, registry: CollectorRegistry) -> None:
        self.log = log
        self.up = Gauge(
            "modelyard_prediction_log_up",
            "1 while this replica's prediction log can write, 0 while it cannot "
            "(a full disk, a failed writer).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.failures = Counter(
            "modelyard_prediction_log_failures",
            "Predictions the log could not record, by outcome: rejected (answered 503 "
            "prediction_log_unavailable) or unlogged (predictions.on_failure = serve_unlogged).",
            ["outcome"],
            registry=registry,
        )
        self.up.set(1)
        log.observer = self.observe

    def observe(self, event: str) -> None:
        """What the log tells (from its writer thread too): down, up, rejected, unlogged."""
        if event in ("rejected", "unlogged"):
            self.failures.labels(event).inc()
        self.refresh()

    def refresh(self) -> dict[str, str]:
        problems = self.log.problems()
        self.up.set(0 if problems else 1)
        return problems

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, what ``/readyz`` shows): not ready while predictions cannot be logged
        and the policy refuses unlogged answers."""
        problems = self.refresh()
        blocked = "predictions" in problems and self.log.on_failure == "reject"
        state: dict[str, Any] = {"ready": not blocked, "on_failure": self.log.on_failure}
        if problems:
            state["errors"] = problems
        return not blocked, state
