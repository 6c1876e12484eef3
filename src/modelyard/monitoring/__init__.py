"""Monitoring: the prediction log, reference profiles, drift, quality, SLOs and alerts."""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    # Reference profiles live in contracts (the registry stores them too) and the newest
    # monitoring values are read beside their table (the server reads them too); both are
    # named here as well, so that ``from modelyard.monitoring import profile`` keeps working.
    from modelyard.backends.metadata import (
        latest_monitor_metrics as latest_metrics,
    )
    from modelyard.backends.predictions import (
        BatchLog,
        PredictionLog,
        log_batch,
    )
    from modelyard.contracts import (
        CategoricalProfile,
        NumericProfile,
        Profile,
        profile,
    )
    from modelyard.monitoring._check import (
        Checker,
        RuleResult,
        alert_history,
        alert_states,
    )
    from modelyard.monitoring._deliver import (
        deliver,
    )
    from modelyard.monitoring._drift import (
        DEFAULT_THRESHOLDS,
        ColumnDrift,
        DriftReport,
        drift,
    )
    from modelyard.monitoring._export import (
        export,
    )
    from modelyard.monitoring._lineage import (
        Lineage,
        lineage_of,
    )
    from modelyard.monitoring._quality import (
        joined,
        quality,
    )
    from modelyard.monitoring._quality import (
        scores as quality_scores,
    )
    from modelyard.monitoring._report import (
        build_file_report,
        build_report,
        write_report,
    )
    from modelyard.monitoring._report import (
        render_html as render_report,
    )
    from modelyard.monitoring._rules import (
        Alerting,
        AlertRule,
        known_metrics,
        parse_alerts,
    )
    from modelyard.monitoring._sample import (
        SampleSize,
    )
    from modelyard.monitoring._series import (
        drift_values,
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
    from modelyard.monitoring._slo import (
        SLO_METRICS,
        feature_freshness,
        slo_values,
    )
    from modelyard.monitoring._window import (
        comparable,
        newest_window_end,
        parse_window,
        reference_of,
        resolve_model,
        window_drift,
    )

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
    "Lineage",
    "LogSink",
    "NumericProfile",
    "PredictionLog",
    "Profile",
    "RuleResult",
    "SINK_TYPES",
    "SLO_METRICS",
    "SampleSize",
    "Sink",
    "WebhookSink",
    "alert_history",
    "alert_states",
    "build_file_report",
    "build_report",
    "comparable",
    "deliver",
    "drift",
    "drift_values",
    "export",
    "feature_freshness",
    "joined",
    "known_metrics",
    "latest_metrics",
    "lineage_of",
    "log_batch",
    "metric_history",
    "newest_window_end",
    "parse_alerts",
    "parse_window",
    "profile",
    "quality",
    "quality_scores",
    "record_metrics",
    "reference_of",
    "register_sink",
    "render_report",
    "resolve_model",
    "slo_values",
    "window_drift",
    "write_report",
]

_EXPORTS = {
    "modelyard.backends.metadata": [
        "latest_monitor_metrics as latest_metrics",
    ],
    "modelyard.backends.predictions": [
        "BatchLog",
        "PredictionLog",
        "log_batch",
    ],
    "modelyard.contracts": [
        "CategoricalProfile",
        "NumericProfile",
        "Profile",
        "profile",
    ],
    "modelyard.monitoring._check": [
        "Checker",
        "RuleResult",
        "alert_history",
        "alert_states",
    ],
    "modelyard.monitoring._deliver": [
        "deliver",
    ],
    "modelyard.monitoring._drift": [
        "DEFAULT_THRESHOLDS",
        "ColumnDrift",
        "DriftReport",
        "drift",
    ],
    "modelyard.monitoring._export": [
        "export",
    ],
    "modelyard.monitoring._lineage": [
        "Lineage",
        "lineage_of",
    ],
    "modelyard.monitoring._quality": [
        "joined",
        "quality",
        "scores as quality_scores",
    ],
    "modelyard.monitoring._report": [
        "build_file_report",
        "build_report",
        "render_html as render_report",
        "write_report",
    ],
    "modelyard.monitoring._rules": [
        "Alerting",
        "AlertRule",
        "known_metrics",
        "parse_alerts",
    ],
    "modelyard.monitoring._sample": [
        "SampleSize",
    ],
    "modelyard.monitoring._series": [
        "drift_values",
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
    "modelyard.monitoring._slo": [
        "SLO_METRICS",
        "feature_freshness",
        "slo_values",
    ],
    "modelyard.monitoring._window": [
        "comparable",
        "newest_window_end",
        "parse_window",
        "reference_of",
        "resolve_model",
        "window_drift",
    ],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
