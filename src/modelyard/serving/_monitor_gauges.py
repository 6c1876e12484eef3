"""Drift, quality and SLO results as Prometheus gauges on the server's ``/metrics``.

Monitoring evaluations append their values to the metadata store
(``modelyard.monitoring.record_metrics``); at scrape time this collector reads the newest
value of each metric of the served models and turns it into a gauge:

    modelyard_drift_share{model,version,variant}                  drift.share
    modelyard_drift_columns_drifted{model,version,variant}        drift.drifted
    modelyard_drift_rows{model,version,variant}                   drift.rows
    modelyard_drift_detected{model,version,variant,column}        drift.detected.<column>
    modelyard_drift_score{model,version,variant,column,statistic} drift.<stat>.<column>
    modelyard_quality{model,version,variant,metric}               quality.<metric>
    modelyard_quality_rows{model,version,variant}                 quality.rows
    modelyard_slo{model,version,variant,metric}                   slo.<metric>
    modelyard_monitor_last_evaluation_timestamp_seconds{model}
    modelyard_monitor_up                                          1 if the read succeeded

A value recorded for a version this server does not serve (any more) is left out, so
an alert on a replaced version resolves; a value recorded without a version is kept.
A missing version or variant is an empty label, which Prometheus treats as absent.

The read is cached for ``ttl_s`` (a busy Prometheus, or several, must not hammer the
database) and a failed read is logged and leaves the gauges out: ``/metrics`` never
fails because of it. Nor does it hang on a database that stops answering: the read runs
in its own thread and is given ``read_timeout_s``, and while it is still stuck the next
scrapes skip the gauges instead of starting another read. The collector is not a
``prometheus_client`` metric, so in multiprocess mode nothing of it goes to the shared
files and the worker that answers the scrape emits it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from modelyard.backends.metadata import latest_monitor_metrics
from modelyard.serving._health import in_daemon_thread

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore
    from modelyard.serving._pool import ModelPool

logger = logging.getLogger("modelyard.serving")

DEFAULT_TTL_S = 15.0
READ_TIMEOUT_S = 2.0

# Served model name -> the versions its slots hold now.
Served = Callable[[], Mapping[str, Collection[int]]]

_HELP = {
    "drift_share": "Share of input columns that drifted in the newest drift evaluation.",
    "drift_columns_drifted": "Input columns that drifted in the newest drift evaluation.",
    "drift_rows": "Rows of served traffic in the newest drift evaluation's window.",
    "drift_detected": "1 if the column drifted in the newest drift evaluation, else 0.",
    "drift_score": "Drift statistic per column (psi, ks, ks_p_value, js, chi2_p_value, …).",
    "quality": "Quality from delayed labels (accuracy, f1, roc_auc, pr_auc, mae, rmse, …).",
    "quality_rows": "Labelled rows behind the newest quality evaluation.",
    "slo": "Service level of the newest evaluation (latency_p99_ms, error_rate, volume, …).",
}
_LABELS = {
    "drift_share": [],
    "drift_columns_drifted": [],
    "drift_rows": [],
    "drift_detected": ["column"],
    "drift_score": ["column", "statistic"],
    "quality": ["metric"],
    "quality_rows": [],
    "slo": ["metric"],
}
_DRIFT_TOTALS = {"share": "drift_share", "drifted": "drift_columns_drifted", "rows": "drift_rows"}


def served_versions(pool: ModelPool) -> dict[str, set[int]]:
    """The versions each model's slots (champion, candidate) hold now."""
    return {
        name: {slot.current.version for slot in d.slots if slot.current is not None}
        for name, d in pool.deployments.items()
    }


class MonitorGauges(Collector):
    """The newest monitoring results of the served models, read at scrape time."""

    def __init__(
        self,
        store: MetadataStore,
        served: Served,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.served = served
        self.ttl_s = ttl_s
        self.clock = clock
        self.read_timeout_s = read_timeout_s
        self._reading: Future[list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] | None = None
        self._read_at: float | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not read the database

    def collect(self) -> Iterable[Metric]:
        served = self.served()
        rows = self._latest(sorted(served))
        up = GaugeMetricFamily(
            "modelyard_monitor_up",
            "1 if the last read of monitoring results from the metadata store succeeded.",
        )
        up.add_metric([], 0.0 if rows is None else 1.0)
        if rows is None:
            return [up]
        return [up, *gauges(rows, served)]

    def _latest(self, models: list[str]) -> list[dict[str, Any]] | None:
        """The cached rows, read again once ``ttl_s`` has passed; None if the read failed."""
        with self._lock:  # concurrent scrapes wait for one read instead of each reading
            now = self.clock()
            if self._read_at is not None and now - self._read_at < self.ttl_s:
                return self._rows
            reading, wait_s = self._reading, 0.0  # a read still stuck: not waited for again
            if reading is None or reading.done():
                reading = self._reading = in_daemon_thread(
                    lambda: latest_monitor_metrics(self.store, models), "modelyard-gauges"
                )
                wait_s = self.read_timeout_s
            try:
                rows: list[dict[str, Any]] | None = reading.result(wait_s)
            except Exception as exc:  # any failure: /metrics answers without the gauges
                hung = not reading.done()
                logger.warning(
                    "monitoring gauges skipped: cannot read monitoring results from the "
                    "metadata store; check metadata.url and that the server can reach it",
                    exc_info=not hung,
                    extra={
                        "models": models,
                        "error": f"no answer within {self.read_timeout_s:g} s"
                        if hung
                        else str(exc),
                    },
                )
                rows = None
            # A failure is cached too, so a broken database is asked once per ttl_s.
            self._rows, self._read_at = rows, now
            return rows


def gauges(
    rows: Iterable[Mapping[str, Any]], served: Mapping[str, Collection[int]]
) -> list[Metric]:
    """One gauge family per kind of result, from ``latest_monitor_metrics`` rows."""
    families = {
        key: GaugeMetricFamily(
            f"modelyard_{key}", _HELP[key], labels=["model", "version", "variant", *extra]
        )
        for key, extra in _LABELS.items()
    }
    evaluated = GaugeMetricFamily(
        "modelyard_monitor_last_evaluation_timestamp_seconds",
        "Unix time of the newest monitoring result of the model shown here.",
        labels=["model"],
    )
    last: dict[str, float] = {}
    seen: set[tuple[str, ...]] = set()
    # Newest first, so that two rows mapping to one series (variant None and "") keep the
    # newer one: Prometheus rejects a scrape that repeats a series.
    ordered = sorted(rows, key=lambda r: (r["at"], r.get("id") or 0), reverse=True)
    for row in ordered:
        model, version = str(row["subject"]), row["version"]
        if model not in served or (version is not None and version not in served[model]):
            continue
        last[model] = max(last.get(model, 0.0), row["at"].timestamp())
        parsed = _parse(str(row["metric"]))
        if parsed is None or row["value"] is None:
            continue
        key, extra = parsed
        labels = [model, "" if version is None else str(version), row["variant"] or "", *extra]
        if (key, *labels) in seen:
            continue
        seen.add((key, *labels))
        families[key].add_metric(labels, float(row["value"]))
    for model, at in sorted(last.items()):
        evaluated.add_metric([model], at)
    return [*families.values(), evaluated]


def _parse(metric: str) -> tuple[str, list[str]] | None:
    """``drift.psi.age`` -> ("drift_score", ["age", "psi"]); None for a name not exported."""
    kind, _, rest = metric.partition(".")
    if not rest:
        return None
    if kind == "quality":
        return ("quality_rows", []) if rest == "rows" else ("quality", [rest])
    if kind == "slo":
        return "slo", [rest]
    if kind != "drift":
        return None
    if rest in _DRIFT_TOTALS:
        return _DRIFT_TOTALS[rest], []
    stat, _, column = rest.partition(".")  # a column name may hold dots; a statistic not
    if not column:
        return None
    if stat == "detected":
        return "drift_detected", [column]
    return "drift_score", [column, stat]
