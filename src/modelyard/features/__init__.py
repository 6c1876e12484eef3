"""Features: entities, feature views and services, and point-in-time correct joins."""

from modelyard.features._backfill import BackfillReport, PartitionResult
from modelyard.features._checks import (
    CheckFailure,
    Freshness,
    NullRate,
    Range,
    RowCount,
    UniqueKeys,
)
from modelyard.features._definitions import Entity, FeatureRef, FeatureService, FeatureView
from modelyard.features._online import MaterializeResult, OnlineFeatures
from modelyard.features._registry import Change
from modelyard.features._sources import FileSource, FrameSource, PostgresSource, SqlSource
from modelyard.features._store import FeatureStore, OnlineReader

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
]
