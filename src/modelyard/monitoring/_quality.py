"""Model quality once labels arrive: predictions joined to delayed labels by request id.

Labels come from ``POST /v1/feedback`` (kept in the prediction log's label stream, with
the same crash-safe writer and shipping as predictions) or from a file. Classifiers get
accuracy, F1, ROC AUC, PR AUC and expected calibration error; regressors MAE and RMSE;
per version and variant. scikit-learn computes the metrics.

A group with fewer labelled predictions than ``min_labels`` (``monitoring.min_labels``)
gets no metrics: its ``status`` is ``"not_enough_data"`` and ``note`` says why.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.errors import InvalidInputError
from modelyard.monitoring._sample import DEFAULT_MIN_LABELS, NOT_ENOUGH_DATA, SampleSize

if TYPE_CHECKING:
    from modelyard.backends.predictions import PredictionLog

LABEL_COLUMNS = ["request_id", "row", "label", "ts", "model"]


def read_labels(log: PredictionLog, model: str | None = None) -> pd.DataFrame:
    """Labels given so far (the newest label wins for a request id and row)."""
    table = log.read_labels(model)
    if table.num_rows == 0:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    frame: pd.DataFrame = table.to_pandas()
    return frame.sort_values("ts").drop_duplicates(["request_id", "row"], keep="last")


def joined(
    log: PredictionLog,
    model: str,
    labels: pd.DataFrame | None = None,
    *,
    since: datetime | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """Logged predictions of ``model`` that have a label, with the label as a column;
    only those made at or after ``since``, and by ``version``, when given."""
    table: pa.Table = log.read(model, since=since)
    if since is not None and table.num_rows:
        table = table.filter(pc.greater_equal(table["ts"], since))
    if version is not None and table.num_rows:
        table = table.filter(pc.equal(table["version"], version))
    if table.num_rows == 0:
        return pd.DataFrame()
    predictions = table.to_pandas()
    given = read_labels(log, model) if labels is None else labels
    if "row" not in given.columns:
        given = given.assign(row=0)
    merged: pd.DataFrame = predictions.merge(
        given[["request_id", "row", "label"]], on=["request_id", "row"], how="inner"
    )
    return merged


def quality(frame: pd.DataFrame, *, min_labels: int = DEFAULT_MIN_LABELS) -> list[dict[str, Any]]:
    """Metrics per (version, variant) of labelled predictions, each with a ``status``:
    ``"ok"``, or ``"not_enough_data"`` (fewer than ``min_labels``: rows and a note only)."""
    if frame.empty:
        raise InvalidInputError(
            "no labelled predictions in this window; send labels to POST /v1/feedback "
            "(request_id, label) or pass a label file"
        )
    out = []
    for key, group in frame.groupby(["version", "variant"], sort=True):
        version, variant = key
        head = {"version": int(str(version)), "variant": str(variant)}
        short = SampleSize(min_labels=min_labels).short_of_labels(len(group))
        if short:
            out.append({**head, "status": NOT_ENOUGH_DATA, "note": short, "rows": len(group)})
        else:
            out.append({**head, "status": "ok", **scores(group)})
    return out


def scores(group: pd.DataFrame) -> dict[str, Any]:
    """Quality metrics of logged predictions joined to labels (``output.prediction``, ``label``)."""
    from sklearn import metrics as m

    predicted = group["output.prediction"]
    truth = group["label"]
    result: dict[str, Any] = {"rows": len(group)}
    probability_columns = [c for c in group.columns if c.startswith("output.probability_")]
    if not probability_columns and pd.api.types.is_float_dtype(predicted):
        error = predicted.astype(float) - truth.astype(float)
        result["mae"] = float(np.abs(error).mean())
        result["rmse"] = float(np.sqrt((error**2).mean()))
        return result
    labels = truth.astype(str)
    guesses = predicted.astype(str)
    result["accuracy"] = float(m.accuracy_score(labels, guesses))
    result["f1"] = float(m.f1_score(labels, guesses, average="macro"))
    classes = [c[len("output.probability_") :] for c in probability_columns]
    if len(classes) == 2 and labels.nunique() == 2:
        positive = classes[1]
        score = group[f"output.probability_{positive}"].astype(float)
        y = (labels == positive).astype(int)
        result["roc_auc"] = float(m.roc_auc_score(y, score))
        result["pr_auc"] = float(m.average_precision_score(y, score))
        result["calibration_error"] = _ece(y.to_numpy(), score.to_numpy())
    return result


def _ece(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(total)
