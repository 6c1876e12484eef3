"""Tracking: runs with params, metrics, tags, artifacts, datasets, environment and seed."""

from modelyard.tracking._holdout import (
    Holdout,
    log_holdout,
    read_holdout,
    read_holdout_file,
)
from modelyard.tracking._query import MetricPoint, RunInfo, Tracking
from modelyard.tracking._run import Run
from modelyard.tracking._seed import current_seed, seed_everything

__all__ = [
    "Holdout",
    "MetricPoint",
    "Run",
    "RunInfo",
    "Tracking",
    "current_seed",
    "log_holdout",
    "read_holdout",
    "read_holdout_file",
    "seed_everything",
]
