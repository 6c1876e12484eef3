"""Service-level indicators over a window of the prediction log, and feature freshness.

Latency and errors come from the log, not from the server's Prometheus counters, so
``monitor check`` works from any machine that sees the workspace, with or without a
Prometheus, and over any window. The latency is the one the log records: from routing
to the answer, per request (a request of many rows counts once). Batch-scored rows
(variant ``batch``) are not service traffic and are left out.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.backends.predictions import BATCH_VARIANT

if TYPE_CHECKING:
    from modelyard.backends.predictions import PredictionLog
    from modelyard.features import FeatureStore

SLO_METRICS: dict[str, str] = {
    "requests": "requests answered or failed in the window",
    "volume": "rows predicted in the window",
    "error_rate": "share of requests that failed with a 5xx (the server's fault)",
    "client_error_rate": "share of requests refused with a 4xx (bad input)",
    "latency_p50_ms": "median latency of answered requests, ms",
    "latency_p99_ms": "99th percentile latency of answered requests, ms",
    "feature_freshness_s": "seconds since the oldest of the features was last materialized",
}


def slo_values(
    log: PredictionLog, model: str, since: datetime, until: datetime, *, version: int | None = None
) -> dict[str, float | None]:
    """Request count, volume, error rates and latency percentiles of ``model``'s traffic."""
    table = log.read(model, errors=True, since=since)
    if table.num_rows:
        keep = pc.and_(pc.greater_equal(table["ts"], since), pc.less(table["ts"], until))
        keep = pc.and_(keep, pc.not_equal(table["variant"], BATCH_VARIANT))
        if version is not None:
            keep = pc.and_(keep, pc.equal(table["version"], version))
        table = table.filter(keep)
    if table.num_rows == 0:
        empty: dict[str, float | None] = {"requests": 0.0, "volume": 0.0}
        return {**empty, "error_rate": None, "client_error_rate": None} | _latency(None)
    status = (
        pc.fill_null(table["status"], 200)
        if "status" in table.column_names
        else pa.array(np.full(table.num_rows, 200))
    )
    answered = pc.equal(status, 200)
    volume = int(pc.sum(answered).as_py() or 0)
    # One row per request: a request of many rows is one success or one failure.
    first = pc.equal(table["row"], 0)
    per_request = status.filter(first)
    requests = len(per_request)
    codes = np.asarray(per_request.to_numpy(zero_copy_only=False))
    latency = table["latency_ms"].filter(pc.and_(first, answered))
    return {
        "requests": float(requests),
        "volume": float(volume),
        "error_rate": float((codes >= 500).mean()) if requests else None,
        "client_error_rate": float(((codes >= 400) & (codes < 500)).mean()) if requests else None,
        **_latency(np.asarray(latency.to_numpy(zero_copy_only=False), dtype=float)),
    }


def _latency(values: np.ndarray[Any, Any] | None) -> dict[str, float | None]:
    if values is None or values.size == 0:
        return {"latency_p50_ms": None, "latency_p99_ms": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"latency_p50_ms": float(p50), "latency_p99_ms": float(p99)}


def feature_freshness(features: FeatureStore, name: str, now: datetime) -> float | None:
    """Seconds since the stalest view of ``name`` (a view or a feature service) was
    materialized; None when one was never materialized."""
    marks = features.watermarks(name)
    if not marks or any(m is None for m in marks.values()):
        return None
    oldest = min(m for m in marks.values() if m is not None)
    return max(0.0, (now - oldest).total_seconds())
