"""What a gate judges: signature compatibility, the data contract, holdout metrics, latency.

Quality metrics come from the same scikit-learn code that scores live traffic once its
labels arrive (``monitoring.quality_scores``), so a number in a release check means
what the same number means on the monitoring dashboard; this module adds only what a
holdout set allows beyond that (log loss, R²) and the latency of a short replay.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelyard.contracts import validate_frame
from modelyard.errors import InvalidInputError, SchemaValidationError
from modelyard.registry import LoadedModel, ModelVersion, signature_problems
from modelyard.release._gates import (
    CLASSIFICATION_METRICS,
    LATENCY_METRICS,
    REGRESSION_METRICS,
    GateResult,
)

WARMUP_CALLS = 5


# -- signatures ------------------------------------------------------------------------------
def check_compatible(candidate: ModelVersion, champion: ModelVersion) -> None:
    """Raise when the candidate cannot take the champion's place without breaking callers.

    The registry's rule (``registry.signature_problems``), the one every server applies
    before it routes traffic to a candidate: a rollout it allows is one servers serve.
    """
    problems = signature_problems(champion.signature, candidate.signature)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidInputError(
            f"candidate {candidate.ref} is not compatible with champion {champion.ref}: "
            f"{problems[0]}{more}; keep the champion's inputs and outputs, or register the "
            "new signature under a new model name"
        )


# -- data contract ---------------------------------------------------------------------------
def contract_result(
    features: pd.DataFrame, truth: pd.Series, versions: Sequence[ModelVersion]
) -> GateResult:
    """The holdout checked against each model's input schema, and its labels for nulls."""
    problems: list[str] = []
    for version in versions:
        try:
            validate_frame(version.signature.inputs, features)
        except SchemaValidationError as exc:
            problems.append(f"{version.ref}: {exc.message}")
    nulls = int(truth.isna().sum())
    if nulls:
        problems.append(f"target '{truth.name}' has {nulls} null labels")
    if not problems:
        return GateResult("data contract", "pass", note=f"{len(features)} rows valid")
    return GateResult("data contract", "fail", note="; ".join(problems))


# -- quality ---------------------------------------------------------------------------------
def _prediction_column(version: ModelVersion) -> str:
    names = version.signature.outputs.names
    if "prediction" in names:
        return "prediction"
    plain = [n for n in names if not n.startswith("probability_")]
    if len(plain) == 1:
        return plain[0]
    raise InvalidInputError(
        f"{version.ref} returns {', '.join(names)}; a release check scores the output named "
        "'prediction' (or a model's only output): rename the model's prediction output"
    )


def model_kind(version: ModelVersion) -> str:
    """``"classifier"`` or ``"regressor"``, judged from the output signature as
    ``monitoring``'s scores judge it from the predictions."""
    outputs = version.signature.outputs
    if any(n.startswith("probability_") for n in outputs.names):
        return "classifier"
    return "regressor" if outputs[_prediction_column(version)].dtype == "float64" else "classifier"


def applicable_metrics(version: ModelVersion) -> tuple[str, tuple[str, ...]]:
    """(what the model is, in words; the quality metrics a holdout gives it), from its
    output signature alone, so a gate it can never meet fails before anything loads.

    A metric that applies may still be undefined on one holdout (ROC AUC with one class
    in the labels): ``quality_metrics`` gives it as None, and its gates fail.
    """
    if model_kind(version) == "regressor":
        return "regressor", REGRESSION_METRICS
    classes = [n for n in version.signature.outputs.names if n.startswith("probability_")]
    if not classes:
        return "classifier without probability outputs", ("accuracy", "f1")
    if len(classes) != 2:  # ROC and PR curves, and calibration, are scored for two classes
        return "multi-class classifier", ("accuracy", "f1", "log_loss")
    return "classifier", CLASSIFICATION_METRICS


def quality_metrics(
    model: LoadedModel, features: pd.DataFrame, truth: pd.Series
) -> dict[str, float | None]:
    """Every metric that applies to ``model`` (``applicable_metrics``) on the holdout rows;
    None where the holdout leaves one undefined."""
    from sklearn import metrics as m

    from modelyard.monitoring import quality_scores as scores

    predicted = model.predict(features)
    chosen = _prediction_column(model.version)
    frame = pd.DataFrame(
        {("output.prediction" if c == chosen else f"output.{c}"): predicted[c] for c in predicted}
    )
    labels = truth.reset_index(drop=True)
    if model_kind(model.version) == "classifier" and _integral_floats(labels):
        labels = labels.astype("int64")  # CSV readers turn 0/1 into 0.0/1.0 beside nulls
    frame["label"] = labels
    result: dict[str, Any] = scores(frame)
    result.pop("rows", None)
    probability = [c for c in frame.columns if c.startswith("output.probability_")]
    if "accuracy" in result and probability:
        classes = [c[len("output.probability_") :] for c in probability]
        given = labels.astype(str)
        if set(given) <= set(classes):
            proba = frame[probability].to_numpy(dtype=float)
            result["log_loss"] = float(m.log_loss(given, proba, labels=classes))
    elif "mae" in result:
        result["r2"] = float(m.r2_score(labels.astype(float), frame["output.prediction"]))
    values = {name: result.get(name) for name in applicable_metrics(model.version)[1]}
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in values.items()}


def _integral_floats(values: pd.Series) -> bool:
    if not pd.api.types.is_float_dtype(values):
        return False
    array = values.to_numpy(dtype=float)
    return bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))


# -- latency ---------------------------------------------------------------------------------
def replay_latency(
    models: Sequence[LoadedModel], features: pd.DataFrame, *, rows: int
) -> list[dict[str, float | None]]:
    """p50 and p99 milliseconds of one-record calls, per model, in this process.

    The replay is serial: one record at a time, each through signature validation and
    the predictor, with no server, no HTTP and no batcher. It measures the model's own
    cost per request, not a served latency under load (that is what a canary judges).
    The models take turns on every record, so a noisy neighbour or a frequency change
    on the machine slows both alike and the comparison stays fair.
    """
    head = features.head(rows)
    if head.empty:
        return [dict.fromkeys(LATENCY_METRICS) for _ in models]
    # Each model gets only its own inputs, as a request would carry (extra fields are refused).
    records = [head[m.version.signature.inputs.names].to_dict("records") for m in models]
    for model, mine in zip(models, records, strict=True):
        for record in mine[:WARMUP_CALLS]:
            model.predict(record)
    timings: list[list[int]] = [[] for _ in models]
    for row in range(len(head)):
        for model, mine, spent in zip(models, records, timings, strict=True):
            start = time.perf_counter_ns()
            model.predict(mine[row])
            spent.append(time.perf_counter_ns() - start)
    out: list[dict[str, float | None]] = []
    for spent in timings:
        ms = np.asarray(spent, dtype=float) / 1e6
        out.append(
            {
                "p50_latency_ms": float(np.percentile(ms, 50)),
                "p99_latency_ms": float(np.percentile(ms, 99)),
            }
        )
    return out
