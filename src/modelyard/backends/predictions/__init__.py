"""Prediction-log back end: each replica's local spool, shipped to one store by URL.

The store is a local folder (default ``.modelyard/predictions``, beside the spool) or
object storage through fsspec (``s3://bucket/prefix``): every replica ships its closed
segments there as Parquet within ``max_delay_s``, and every reader reads the one
dataset, so replicas on several hosts are one service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.backends.predictions._batch import VARIANT as BATCH_VARIANT
from modelyard.backends.predictions._batch import BatchLog, log_batch
from modelyard.backends.predictions._compact import Maintenance, compact, retain
from modelyard.backends.predictions._layout import hash_value
from modelyard.backends.predictions._log import DEFAULT_MAX_DELAY_S, PredictionLog
from modelyard.backends.predictions._parts import SCHEMES, FsspecParts, LocalParts, PartStore
from modelyard.backends.predictions._parts import open_parts as open_parts
from modelyard.backends.predictions._segments import read_segment

__all__ = [
    "BATCH_VARIANT",
    "BatchLog",
    "DEFAULT_MAX_DELAY_S",
    "FsspecParts",
    "LocalParts",
    "Maintenance",
    "PartStore",
    "PredictionLog",
    "SCHEMES",
    "compact",
    "hash_value",
    "log_batch",
    "open_parts",
    "open_prediction_log",
    "read_segment",
    "retain",
]


def open_prediction_log(
    url: str,
    *,
    spool: str | Path,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> PredictionLog:
    """The log whose parts live at ``url`` and whose local segments live in ``spool``."""
    store = open_parts(url, **(storage_options or {}))
    return PredictionLog(Path(spool), store, max_delay_s=max_delay_s, **options)
