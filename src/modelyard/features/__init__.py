"""Features: entities, feature views and services, and point-in-time correct joins."""

from modelyard.features._definitions import Entity, FeatureRef, FeatureService, FeatureView
from modelyard.features._online import MaterializeResult, OnlineFeatures
from modelyard.features._registry import Change
from modelyard.features._sources import FileSource, FrameSource, SqlSource
from modelyard.features._store import FeatureStore, OnlineReader

__all__ = [
    "Change",
    "Entity",
    "FeatureRef",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FileSource",
    "FrameSource",
    "MaterializeResult",
    "OnlineFeatures",
    "OnlineReader",
    "SqlSource",
]
