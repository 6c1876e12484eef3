"""Monitoring: the prediction log, reference profiles, and drift between two windows."""

from modelyard.monitoring._drift import DEFAULT_THRESHOLDS, ColumnDrift, DriftReport, drift
from modelyard.monitoring._predlog import PredictionLog, compact, read_predictions
from modelyard.monitoring._profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    profile,
)
from modelyard.monitoring._report import build_report
from modelyard.monitoring._window import parse_window, window_drift

__all__ = [
    "CategoricalProfile",
    "ColumnDrift",
    "DEFAULT_THRESHOLDS",
    "DriftReport",
    "NumericProfile",
    "PredictionLog",
    "Profile",
    "build_report",
    "compact",
    "drift",
    "parse_window",
    "profile",
    "read_predictions",
    "window_drift",
]
