"""Monitoring results as time series in the metadata store.

Every evaluation (``monitor drift`` over logged traffic, ``monitor check``) appends one
row per metric: drift per column, quality per version and variant, SLOs. The history
answers "since when has this column drifted?", the server exports the newest values
as Prometheus gauges (read by ``backends.metadata.latest_monitor_metrics``), and alert
rules read what was just computed.

Metric names are dotted: ``drift.share``, ``drift.psi.<column>``, ``quality.roc_auc``,
``slo.latency_p99_ms``. The subject is a model name, or ``view:<name>`` for features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from modelyard import _time
from modelyard.backends.metadata import tables as t

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore
    from modelyard.monitoring._drift import DriftReport


def drift_values(report: DriftReport) -> dict[str, float | None]:
    """``drift.share``, ``drift.drifted`` and ``drift.<stat>.<column>`` of one report.

    A report with too few rows to judge gives ``drift.rows`` and no data (None) for the
    share and count, so that history and gauges show "no data", not "nothing drifted".
    """
    if report.status != "ok":
        return {
            "drift.share": None,
            "drift.drifted": None,
            "drift.rows": float(report.rows_current),
        }
    drifted = report.drifted_columns
    values: dict[str, float | None] = {
        "drift.share": len(drifted) / len(report.columns) if report.columns else 0.0,
        "drift.drifted": float(len(drifted)),
        "drift.rows": float(report.rows_current),
    }
    for name, col in report.columns.items():
        values[f"drift.detected.{name}"] = 1.0 if col.drifted else 0.0
        for stat, value in col.metrics.items():
            if value is not None:
                values[f"drift.{stat}.{name}"] = float(value)
    return values


def record_metrics(
    store: MetadataStore,
    subject: str,
    values: Mapping[str, float | None],
    *,
    window: timedelta,
    version: int | None = None,
    variant: str | None = None,
    at: datetime | None = None,
) -> None:
    """Append one evaluation's values (NaN and None are kept as NULL: "no data")."""
    when = _time.now_us() if at is None else _time.to_us(at, "at")
    rows = [
        {
            "subject": subject,
            "version": version,
            "variant": variant,
            "metric": metric,
            "value": None if value is None or math.isnan(value) else float(value),
            "window_s": int(window.total_seconds()),
            "at": when,
        }
        for metric, value in values.items()
    ]
    if rows:
        with store.write() as conn:
            conn.execute(insert(t.monitor_metrics), rows)


def metric_history(
    store: MetadataStore,
    subject: str,
    *,
    metric: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Recorded values of ``subject``, oldest first; ``metric`` ending in ``*`` is a prefix."""
    table = t.monitor_metrics
    query = select(table).where(table.c.subject == subject)
    if metric:
        if metric.endswith("*"):
            query = query.where(table.c.metric.startswith(metric[:-1], autoescape=True))
        else:
            query = query.where(table.c.metric == metric)
    if since is not None:
        query = query.where(table.c.at >= _time.to_us(since, "since"))
    query = query.order_by(table.c.at.desc(), table.c.id.desc()).limit(limit)
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["at"] = _time.to_datetime(row["at"])
        del row["id"]
    return rows[::-1]
