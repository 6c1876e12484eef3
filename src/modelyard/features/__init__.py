"""Features: entities, feature views and services, and point-in-time correct joins."""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.features._backfill import BackfillReport, PartitionResult
    from modelyard.features._checks import (
        CheckFailure,
        Freshness,
        NullRate,
        Range,
        RowCount,
        UniqueKeys,
        check_partition,
        check_spec,
        run_checks,
    )
    from modelyard.features._definitions import Entity, FeatureRef, FeatureService, FeatureView
    from modelyard.features._online import MaterializeResult, OnlineFeatures
    from modelyard.features._registry import Change
    from modelyard.features._sources import FileSource, FrameSource, PostgresSource, SqlSource
    from modelyard.features._store import FeatureStore, OnlineReader, require_duckdb

__all__ = [
    "BackfillReport",
    "Change",
    "CheckFailure",
    "Entity",
    "FeatureRef",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FileSource",
    "FrameSource",
    "Freshness",
    "MaterializeResult",
    "NullRate",
    "OnlineFeatures",
    "OnlineReader",
    "PartitionResult",
    "PostgresSource",
    "Range",
    "RowCount",
    "SqlSource",
    "UniqueKeys",
    "check_partition",
    "check_spec",
    "require_duckdb",
    "run_checks",
]

_EXPORTS = {
    "modelyard.features._backfill": ["BackfillReport", "PartitionResult"],
    "modelyard.features._checks": [
        "CheckFailure",
        "Freshness",
        "NullRate",
        "Range",
        "RowCount",
        "UniqueKeys",
        "check_partition",
        "check_spec",
        "run_checks",
    ],
    "modelyard.features._definitions": ["Entity", "FeatureRef", "FeatureService", "FeatureView"],
    "modelyard.features._online": ["MaterializeResult", "OnlineFeatures"],
    "modelyard.features._registry": ["Change"],
    "modelyard.features._sources": ["FileSource", "FrameSource", "PostgresSource", "SqlSource"],
    "modelyard.features._store": ["FeatureStore", "OnlineReader", "require_duckdb"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, extras={"duckdb": "features"})
