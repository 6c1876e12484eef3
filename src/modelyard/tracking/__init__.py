"""Tracking: runs with params, metrics, tags, artifacts, datasets, environment and seed."""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.tracking._holdout import (
        Holdout,
        log_holdout,
        read_holdout,
        read_holdout_file,
    )
    from modelyard.tracking._query import Experiment, MetricPoint, RunInfo, Tracking
    from modelyard.tracking._run import FEATURE_LINEAGE_TAG, Run
    from modelyard.tracking._run_store import (
        RunStore,
        SqlRunStore,
        ensure_experiment,
        store_metrics,
    )
    from modelyard.tracking._seed import current_seed, seed_everything

__all__ = [
    "Experiment",
    "FEATURE_LINEAGE_TAG",
    "Holdout",
    "MetricPoint",
    "Run",
    "RunInfo",
    "RunStore",
    "SqlRunStore",
    "Tracking",
    "current_seed",
    "ensure_experiment",
    "log_holdout",
    "read_holdout",
    "read_holdout_file",
    "seed_everything",
    "store_metrics",
]

_EXPORTS = {
    "modelyard.tracking._holdout": ["Holdout", "log_holdout", "read_holdout", "read_holdout_file"],
    "modelyard.tracking._query": ["Experiment", "MetricPoint", "RunInfo", "Tracking"],
    "modelyard.tracking._run": ["FEATURE_LINEAGE_TAG", "Run"],
    "modelyard.tracking._run_store": [
        "RunStore",
        "SqlRunStore",
        "ensure_experiment",
        "store_metrics",
    ],
    "modelyard.tracking._seed": ["current_seed", "seed_everything"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
