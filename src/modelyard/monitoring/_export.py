"""Hand the server's metrics to an existing stack: a Grafana dashboard and Prometheus rules.

Both are built from the metric names the server exports (``serving/_metrics.py``, and
the monitoring gauges of ``serving/_monitor_gauges.py``), so they stay in step with
it; a test checks every expression names a metric a live ``/metrics`` shows.

Monitoring gauges are taken with ``max by``: every replica of a model exports the same
stored values, so a sum would count them once per replica.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelyard._files import atomic_write_text

_RATE = "sum by (model, version, variant) (rate(modelyard_requests_total[5m]))"
_ERRORS = (
    'sum by (model) (rate(modelyard_requests_total{code=~"5.."}[5m]))'
    " / sum by (model) (rate(modelyard_requests_total[5m]))"
)


def _quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, model, version) "
        "(rate(modelyard_request_latency_seconds_bucket[5m])))"
    )


# Higher is better for these; the error-like ones (mae, rmse, calibration_error) depend on
# the target's scale, so no default threshold fits them.
_SCORES = 'metric=~"accuracy|f1|roc_auc|pr_auc"'
_DRIFT_SHARE = "max by (model, version) (modelyard_drift_share)"
_QUALITY = f"max by (model, variant, metric) (modelyard_quality{{{_SCORES}}})"
_QUALITY_BEST = (
    f"max by (model, variant, metric) (max_over_time(modelyard_quality{{{_SCORES}}}[7d]))"
)
_STALENESS = "time() - max by (model) (modelyard_monitor_last_evaluation_timestamp_seconds)"

PANELS: list[tuple[str, str, str]] = [
    ("Requests per second", _RATE, "reqps"),
    ("Error rate (5xx share)", _ERRORS, "percentunit"),
    ("Latency p50", _quantile(0.5), "s"),
    ("Latency p99", _quantile(0.99), "s"),
    (
        "Batch size (mean rows)",
        "sum by (model) (rate(modelyard_batch_size_rows_sum[5m]))"
        " / sum by (model) (rate(modelyard_batch_size_rows_count[5m]))",
        "short",
    ),
    ("Queue depth", "sum by (model) (modelyard_queue_depth)", "short"),
    (
        "Cache hit ratio",
        'sum by (model) (rate(modelyard_cache_total{result="hit"}[5m]))'
        " / sum by (model) (rate(modelyard_cache_total[5m]))",
        "percentunit",
    ),
    (
        "Missing online features per second",
        "sum by (model, feature) (rate(modelyard_features_missing_total[5m]))",
        "short",
    ),
    ("Drift: share of columns drifted", _DRIFT_SHARE, "percentunit"),
    (
        "Drift: PSI per column",
        'max by (model, column) (modelyard_drift_score{statistic="psi"})',
        "short",
    ),
    (
        "Quality from delayed labels",
        "max by (model, version, variant, metric) (modelyard_quality)",
        "short",
    ),
    ("Monitoring: time since last evaluation", _STALENESS, "s"),
]


def dashboard(title: str = "modelyard serving") -> dict[str, Any]:
    """A Grafana dashboard (JSON model): one time-series panel per serving or monitoring signal."""
    panels = []
    for i, (name, expr, unit) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": name,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": "A", "expr": expr, "legendFormat": "__auto"}],
            }
        )
    return {
        "title": title,
        "uid": "modelyard-serving",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "panels": panels,
    }


def rules(
    *,
    p99_seconds: float = 0.5,
    error_rate: float = 0.01,
    drift_share: float = 0.5,
    quality_drop: float = 0.05,
    stale_hours: float = 48.0,
) -> list[dict[str, Any]]:
    """Alerting rules: error rate, p99 latency, failed loads, drift, quality, staleness,
    a prediction log that cannot write.

    Args:
        drift_share: alert when more than this share of a model's input columns drifted.
        quality_drop: alert when accuracy, F1, ROC AUC or PR AUC falls more than this
            (absolute) below its best of the last 7 days.
        stale_hours: alert when a served model's monitoring results are older than this.
    """
    return [
        {
            "alert": "ModelyardHighErrorRate",
            "expr": f"({_ERRORS}) > {error_rate:g}",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"model {{{{ $labels.model }}}}: over {error_rate:.0%} of requests fail"
            },
        },
        {
            "alert": "ModelyardSlowP99",
            "expr": f"{_quantile(0.99)} > {p99_seconds:g}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"model {{{{ $labels.model }}}}: p99 latency above {p99_seconds:g} s"
            },
        },
        {
            "alert": "ModelyardModelLoadFailed",
            "expr": "increase(modelyard_model_load_failures_total[10m]) > 0",
            "for": "0m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "model {{ $labels.model }} version {{ $labels.version }} failed to "
                "load; the previous version keeps serving"
            },
        },
        {
            "alert": "ModelyardDataDrift",
            "expr": f"{_DRIFT_SHARE} > {drift_share:g}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "model {{ $labels.model }} version {{ $labels.version }}: "
                f"more than {drift_share:.0%} of input columns drifted; "
                "see 'modelyard monitor drift' for which"
            },
        },
        {
            "alert": "ModelyardQualityDrop",
            "expr": f"{_QUALITY} < {_QUALITY_BEST} - {quality_drop:g}",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "model {{ $labels.model }} ({{ $labels.variant }}): "
                f"{{{{ $labels.metric }}}} fell more than {quality_drop:g} below its "
                "best of the last 7 days"
            },
        },
        {
            "alert": "ModelyardMonitoringStale",
            "expr": f"{_STALENESS} > {stale_hours * 3600:g}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "model {{ $labels.model }}: no monitoring result for "
                f"{stale_hours:g} h; check the scheduled drift and quality jobs"
            },
        },
        {
            "alert": "ModelyardPredictionLogDown",
            "expr": "modelyard_prediction_log_up == 0",
            "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.instance }}: the prediction log cannot write (a full "
                "disk?); predictions are refused with 503 prediction_log_unavailable, or "
                "answered unlogged with predictions.on_failure = serve_unlogged"
            },
        },
    ]


def rules_yaml(items: list[dict[str, Any]]) -> str:
    """Prometheus rule file text. Every scalar is JSON-quoted, which YAML reads as is."""
    lines = ["groups:", "  - name: modelyard", "    rules:"]
    for rule in items:
        lines.append(f"      - alert: {json.dumps(rule['alert'])}")
        lines.append(f"        expr: {json.dumps(rule['expr'])}")
        lines.append(f"        for: {json.dumps(rule['for'])}")
        for key in ("labels", "annotations"):
            lines.append(f"        {key}:")
            lines += [f"          {k}: {json.dumps(v)}" for k, v in rule[key].items()]
    return "\n".join(lines) + "\n"


def export(
    folder: Path,
    *,
    p99_seconds: float = 0.5,
    error_rate: float = 0.01,
    drift_share: float = 0.5,
    quality_drop: float = 0.05,
    stale_hours: float = 48.0,
) -> list[Path]:
    """Write ``grafana-dashboard.json`` and ``prometheus-rules.yml`` (``rules``'s thresholds)."""
    alerts = rules(
        p99_seconds=p99_seconds,
        error_rate=error_rate,
        drift_share=drift_share,
        quality_drop=quality_drop,
        stale_hours=stale_hours,
    )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("grafana-dashboard.json", json.dumps(dashboard(), indent=2) + "\n"),
        ("prometheus-rules.yml", rules_yaml(alerts)),
    ):
        written.append(atomic_write_text(folder / name, text))
    return written
