"""The dashboard's quality page of a model: once labels have arrived, its scores, and for a
classifier the confusion matrix and, when it logged class probabilities, the ROC and
precision-recall curves.

Labels meet predictions in ``monitoring.joined`` and are scored by ``monitoring.quality``,
as in ``modelyard monitor quality`` and ``monitor check``, so the page and the alerts
agree. The matrix and the curves are scikit-learn's, drawn with ``_charts.lines``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelyard.ui import _charts

if TYPE_CHECKING:  # numpy and pandas load with the page, not with the dashboard
    import numpy as np
    import pandas as pd
    from markupsafe import Markup

    from modelyard.workspace import Workspace

PROBABILITY = "output.probability_"
MAX_CLASSES = 20  # a matrix wider than this is not readable; the scores still are
MAX_CURVES = 7  # one-vs-rest curves of a multi-class model (one colour each)
MAX_POINTS = 300  # points per curve: enough to draw it, few enough for the page


def quality_view(
    ws: Workspace, model: str, *, alias: str, window: str, span: timedelta
) -> dict[str, Any]:
    """What monitor_quality.html shows; the registry's NotFoundError for an unknown model."""
    import pandas as pd

    from modelyard.monitoring import SampleSize, joined, quality, resolve_model

    name, version = resolve_model(ws.registry, f"{model}@{alias}")
    frame = joined(ws.predictions, name, since=datetime.now(UTC) - span, version=version)
    view: dict[str, Any] = {
        "version": f"{name}/{version}",
        "labelled": len(frame),
        "groups": [],
        "matrix": None,
        "curves": [],
        "notes": [],
    }
    if frame.empty:
        return view
    sample = SampleSize.of(ws.config)
    view["groups"] = quality(frame, min_labels=sample.min_labels)
    view["metrics"] = sorted(
        {k for g in view["groups"] for k in g} - {"version", "variant", "status", "note", "rows"}
    )
    probabilities = [c for c in frame.columns if c.startswith(PROBABILITY)]
    predicted = frame["output.prediction"]
    if not probabilities and pd.api.types.is_float_dtype(predicted):
        view["notes"].append("a regressor: its quality is MAE and RMSE, above; no classes")
        return view
    truth, guesses = frame["label"].astype(str), predicted.astype(str)
    view["matrix"] = _matrix(truth, guesses)
    if view["matrix"] is None:
        view["notes"].append(f"more than {MAX_CLASSES} classes: the matrix is left out")
    if not probabilities:
        view["notes"].append("no scores logged: ROC/PR need probabilities")
    elif truth.nunique() < 2:
        view["notes"].append("every label is one class: ROC/PR need both positives and negatives")
    else:
        view["curves"] = _curves(frame, truth, [c[len(PROBABILITY) :] for c in probabilities])
    return view


def _matrix(truth: pd.Series, guesses: pd.Series) -> dict[str, Any] | None:
    """Counts with actual classes as rows and predicted ones as columns, each cell with a
    shade 0-4 of its count against the largest."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    classes = sorted(set(truth) | set(guesses))
    if len(classes) > MAX_CLASSES:
        return None
    counts = confusion_matrix(truth, guesses, labels=classes)
    top = max(int(counts.max()), 1)
    rows = [
        [(int(c), min(4, int(np.ceil(4 * c / top)))) for c in counts[i]]
        for i in range(len(classes))
    ]
    return {
        "classes": classes,
        "rows": list(zip(classes, rows, strict=True)),
        "total": int(counts.sum()),
    }


def _curves(frame: pd.DataFrame, truth: pd.Series, classes: list[str]) -> list[Markup]:
    """ROC and PR curves: of the second class against the first for two classes (the
    positive class ``monitoring.quality_scores`` uses), else one-vs-rest per class."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    binary = len(classes) == 2
    positives = classes[1:] if binary else [c for c in classes if c in set(truth)][:MAX_CURVES]
    roc: list[_charts.Series] = []
    pr: list[_charts.Series] = []
    for positive in positives:
        y = (truth == positive).to_numpy(dtype=int)
        if y.min() == y.max():  # one-vs-rest of a class every label has, or none has
            continue
        score = frame[PROBABILITY + positive].astype(float).to_numpy()
        fpr, tpr, _ = roc_curve(y, score)
        precision, recall, _ = precision_recall_curve(y, score)
        name = "" if binary else f"{positive} "
        roc.append(_charts.Series(f"{name}AUC {auc(fpr, tpr):.3f}", _thin(fpr, tpr)))
        ap = average_precision_score(y, score)
        pr.append(_charts.Series(f"{name}AP {ap:.3f}", _thin(recall, precision)))
    if not roc:
        return []
    what = f"{positives[0]} vs the rest" if binary else "one class vs the rest"
    chance = _charts.Series("chance", [(0.0, 0.0), (1.0, 1.0)])
    return [
        _charts.lines(
            f"ROC: {what}", [*roc, chance], "false positive rate", y_label="true positive rate"
        ),
        _charts.lines(f"Precision-recall: {what}", pr, "recall", y_label="precision"),
    ]


def _thin(xs: np.ndarray[Any, Any], ys: np.ndarray[Any, Any]) -> list[tuple[float, float]]:
    import numpy as np

    keep = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), MAX_POINTS)).round().astype(int))
    return [(float(xs[i]), float(ys[i])) for i in keep]
