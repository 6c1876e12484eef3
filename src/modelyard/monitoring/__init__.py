"""Monitoring: the prediction log, reference profiles, drift, quality, SLOs and alerts."""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.monitoring._batchlog import BatchLog, log_batch
    from modelyard.monitoring._check import Checker, RuleResult, alert_history, alert_states
    from modelyard.monitoring._deliver import deliver
    from modelyard.monitoring._drift import DEFAULT_THRESHOLDS, ColumnDrift, DriftReport, drift
    from modelyard.monitoring._predlog import PredictionLog, compact, read_predictions
    from modelyard.monitoring._profile import (
        CategoricalProfile,
        NumericProfile,
        Profile,
        profile,
    )
    from modelyard.monitoring._quality import scores as quality_scores
    from modelyard.monitoring._report import build_report
    from modelyard.monitoring._rules import Alerting, AlertRule, known_metrics, parse_alerts
    from modelyard.monitoring._series import (
        drift_values,
        latest_metrics,
        metric_history,
        record_metrics,
    )
    from modelyard.monitoring._sinks import (
        SINK_TYPES,
        Alert,
        FileSink,
        LogSink,
        Sink,
        WebhookSink,
        register_sink,
    )
    from modelyard.monitoring._slo import SLO_METRICS, feature_freshness, slo_values
    from modelyard.monitoring._window import parse_window, resolve_model, window_drift

__all__ = [
    "Alert",
    "AlertRule",
    "Alerting",
    "BatchLog",
    "CategoricalProfile",
    "Checker",
    "ColumnDrift",
    "DEFAULT_THRESHOLDS",
    "DriftReport",
    "FileSink",
    "LogSink",
    "NumericProfile",
    "PredictionLog",
    "Profile",
    "RuleResult",
    "SINK_TYPES",
    "SLO_METRICS",
    "Sink",
    "WebhookSink",
    "alert_history",
    "alert_states",
    "build_report",
    "compact",
    "deliver",
    "drift",
    "drift_values",
    "feature_freshness",
    "known_metrics",
    "latest_metrics",
    "log_batch",
    "metric_history",
    "parse_alerts",
    "parse_window",
    "profile",
    "quality_scores",
    "read_predictions",
    "record_metrics",
    "register_sink",
    "resolve_model",
    "slo_values",
    "window_drift",
]

_EXPORTS = {
    "modelyard.monitoring._batchlog": ["BatchLog", "log_batch"],
    "modelyard.monitoring._check": ["Checker", "RuleResult", "alert_history", "alert_states"],
    "modelyard.monitoring._deliver": ["deliver"],
    "modelyard.monitoring._drift": ["DEFAULT_THRESHOLDS", "ColumnDrift", "DriftReport", "drift"],
    "modelyard.monitoring._predlog": ["PredictionLog", "compact", "read_predictions"],
    "modelyard.monitoring._profile": ["CategoricalProfile", "NumericProfile", "Profile", "profile"],
    "modelyard.monitoring._quality": ["scores as quality_scores"],
    "modelyard.monitoring._report": ["build_report"],
    "modelyard.monitoring._rules": ["Alerting", "AlertRule", "known_metrics", "parse_alerts"],
    "modelyard.monitoring._series": [
        "drift_values",
        "latest_metrics",
        "metric_history",
        "record_metrics",
    ],
    "modelyard.monitoring._sinks": [
        "SINK_TYPES",
        "Alert",
        "FileSink",
        "LogSink",
        "Sink",
        "WebhookSink",
        "register_sink",
    ],
    "modelyard.monitoring._slo": ["SLO_METRICS", "feature_freshness", "slo_values"],
    "modelyard.monitoring._window": ["parse_window", "resolve_model", "window_drift"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
