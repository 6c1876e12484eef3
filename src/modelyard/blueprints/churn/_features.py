"""The churn pipeline's feature definitions and its training sets.

One entity (``customer``), one feature view (``customer_activity``: the daily feature
files of ``_daily.py``, with checks on ranges, nulls and freshness) and the feature
service ``churn_v1`` that the model reads. A training set is a point-in-time join: for
each cut-off, the customers still with us then, their features as of the cut-off (the
last day that ended at or before it, never later) and the label "leaves within the next
``HORIZON_DAYS`` days".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from modelyard.blueprints.churn._daily import FEATURES
from modelyard.features import (
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    Freshness,
    NullRate,
    Range,
)

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

SERVICE = "churn_v1"
VIEW = "customer_activity"
HORIZON_DAYS = 30  # the label: leaves within this many days after the cut-off


def definitions(features_folder: Path) -> list[Entity | FeatureView | FeatureService]:
    """What ``ws.features.apply`` stores for the pipeline (the view reads ``features_folder``)."""
    customer = Entity("customer", {"customer_id": "string"}, "a customer of the telecom")
    checks: list[Range | NullRate | Freshness] = [Range(name, min=0) for name in FEATURES]
    checks += [NullRate(name, max=0.0) for name in FEATURES]
    checks.append(Freshness(timedelta(days=2)))
    view = FeatureView(
        VIEW,
        entity=customer,
        source=FileSource(str(features_folder)),
        features=dict.fromkeys(FEATURES, "float64"),
        ttl=timedelta(days=2),  # a customer's row older than two days is stale
        owner="churn-team",
        description="usage, spend and support windows of each customer, one row a day",
        checks=tuple(checks),
    )
    service = FeatureService(SERVICE, [view], "what the churn model reads")
    return [customer, view, service]


def label_rows(
    customers: pd.DataFrame,
    leaving: np.ndarray,
    start: datetime,
    cutoff_days: Sequence[int],
) -> pd.DataFrame:
    """Entity rows (``customer_id``, ``event_timestamp`` = the cut-off) of the customers
    still with us at each cut-off day, with ``churned`` = leaves within ``HORIZON_DAYS``."""
    frames = []
    for day in cutoff_days:
        # The cut-off is midnight before ``day``: a customer leaving during ``day`` is
        # still with us then, and leaves within the horizon.
        present = ~(leaving < day)  # NaN (stays) compares False: present
        soon = (leaving >= day) & (leaving < day + HORIZON_DAYS)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": customers["customer_id"].to_numpy()[present],
                    "event_timestamp": pd.Timestamp(start.astimezone(UTC) + timedelta(days=day)),
                    "churned": soon[present].astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def training_set(ws: Workspace, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the ``churn_v1`` features as of each row's cut-off (point in time)."""
    found: pd.DataFrame = ws.features.get_historical(rows, SERVICE)
    return found
