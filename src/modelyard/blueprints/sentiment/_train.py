"""Train, measure, log, score and register one sentiment model: the part every variant shares.

A variant (the TF-IDF baseline, a fine-tuned transformer…) hands ``train_and_register``
a ``fit()`` that returns the model; everything else (seeding, lineage, the holdout,
resource use, the signature, scoring the *logged artifact* and registering) is here,
so the versions of one model are measured the same way and compare in a release check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from modelyard.blueprints._resources import peak_rss_mb
from modelyard.blueprints.sentiment._config import SentimentSettings
from modelyard.blueprints.sentiment._data import Corpus
from modelyard.contracts import Field, Schema
from modelyard.registry import ModelVersion, Signature

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

logger = logging.getLogger(__name__)

INPUTS = ("text", "id", "language")
EXAMPLE_ROWS = 20


def service_signature(settings: SentimentSettings, classes: Sequence[str]) -> Signature:
    """What the service takes and answers; every variant of the model shares it.

    ``id`` and ``language`` are optional fields a caller may send (and find again in
    the prediction log); the models read ``text`` only.
    """
    inputs = Schema.of(
        Field(
            name="text",
            dtype="string",
            min_length=1,
            max_length=settings.max_chars,
            description="the text to classify",
        ),
        Field(name="id", dtype="string", nullable=True, description="caller's id of the text"),
        Field(name="language", dtype="string", nullable=True, description="language code, e.g. en"),
    )
    outputs = Schema.of(
        Field(
            name="prediction",
            dtype="string",
            categories=tuple(classes),
            description="the predicted label",
        ),
        Field(
            name="probability",
            dtype="float64",
            min=0.0,
            max=1.0,
            description="probability of the predicted label",
        ),
        *(
            Field(
                name=f"probability_{c}",
                dtype="float64",
                min=0.0,
                max=1.0,
                description=f"probability of {c!r}",
            )
            for c in classes
        ),
    )
    return Signature(inputs=inputs, outputs=outputs)


def inputs_of(texts: pd.Series) -> pd.DataFrame:
    """Request rows for ``texts``: the signature's inputs, ``id`` and ``language`` null."""
    values = texts.reset_index(drop=True)
    none = pd.Series([None] * len(values), dtype=object)
    return pd.DataFrame({"text": values, "id": none, "language": none})


def held_out_metrics(
    outputs: Mapping[str, Any], truth: pd.Series, classes: Sequence[str], majority: str
) -> dict[str, float]:
    """accuracy, f1 (macro), roc_auc, pr_auc, calibration_error and majority_accuracy.

    Scored by the code that scores a release check and live traffic with labels
    (``monitoring.quality_scores``), so a number here means the same there. With two
    classes ROC AUC takes the second class (sorted) as positive, as monitoring does; it
    is the same number for either choice. With more classes it is the macro average of
    one-vs-rest AUCs.
    """
    from sklearn.metrics import roc_auc_score

    from modelyard.monitoring import quality_scores

    labels = truth.astype(str).reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "output.prediction": np.asarray(outputs["prediction"], dtype=object),
            **{
                f"output.probability_{c}": np.asarray(outputs[f"probability_{c}"], dtype=float)
                for c in classes
            },
            "label": labels,
        }
    )
    scores = quality_scores(frame)
    scores.pop("rows", None)
    if len(classes) > 2 and "roc_auc" not in scores and labels.nunique() == len(classes):
        proba = frame[[f"output.probability_{c}" for c in classes]].to_numpy()
        proba = proba / proba.sum(axis=1, keepdims=True)
        scores["roc_auc"] = float(
            roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=list(classes))
        )
    scores["majority_accuracy"] = float((labels == majority).mean())
    return {k: float(v) for k, v in scores.items() if v is not None}


def train_and_register(
    ws: Workspace,
    settings: SentimentSettings,
    corpus: Corpus,
    *,
    kind: str,
    params: dict[str, Any],
    fit: Callable[[], object],
    device: str = "cpu",
    flavor: str | None = None,
    onnx: bool | str = False,
    alias: str | None = None,
    description: str = "",
    progress: Callable[[str], None] | None = None,
) -> ModelVersion:
    """Fit, log, score the logged artifact on the test rows, register, set ``alias``.

    In one tracked run named ``MODEL-KIND``: seeds every generator, logs the train rows
    and keeps the test rows as the run's holdout (``modelyard release check`` judges on
    them), times ``fit()`` (``train_seconds``) and reads the process's peak memory
    afterwards (``train_peak_rss_mb``, see ``peak_rss_mb``), logs the model with the
    service signature and the training rows as its reference profile, then scores what
    was *logged* (as a server loads it, the ONNX copy say) on the test rows.
    ``progress`` gets a line as each stage starts (``fit()`` may write its own).
    """
    import modelyard
    from modelyard.tracking import log_holdout

    seed = settings.seed
    modelyard.seed_everything(seed)
    signature = service_signature(settings, corpus.classes)
    train_inputs = inputs_of(corpus.train["text"])
    test_inputs = inputs_of(corpus.test["text"])
    tags = {"blueprint": "sentiment", "kind": kind, "device": device}
    run_params = {
        **params,
        "seed": seed,
        "max_chars": settings.max_chars,
        "train_rows": len(corpus.train),
        "test_rows": len(corpus.test),
        "data_source": corpus.source,
    }
    name = f"{settings.model_name}-{kind}"

    def say(stage: str) -> None:
        (progress or logger.info)(f"{name}: {stage}")

    with ws.start_run(name, params=run_params, tags=tags, seed=seed) as run:
        run.log_dataset("train", corpus.train, context="train")
        # The test rows with the request's optional fields (null), so that they meet the
        # signature and a release check's data-contract gate passes on them.
        log_holdout(
            run, test_inputs.assign(label=corpus.test["label"]), target="label", name="test"
        )
        say(f"training on {len(corpus.train)} texts")
        start = time.perf_counter()
        model = fit()
        train_seconds = time.perf_counter() - start
        peak = peak_rss_mb()
        exported = {"True": " and its ONNX export", "int8": " and its int8 ONNX export"}.get(
            str(onnx), " and its ONNX export (kept if exact)" if onnx == "auto" else ""
        )
        say(f"logging the model{exported} (trained in {train_seconds:.1f} s)")
        logged = ws.registry.log_model(
            run,
            model,
            signature=signature,
            input_example=train_inputs.head(EXAMPLE_ROWS),
            reference_data=train_inputs,
            flavor=flavor,
            # log_model takes True, False or "int8" and refuses any other value in words.
            onnx=cast(Any, onnx),
        )
        say(f"scoring the logged model on {len(corpus.test)} held-out texts")
        predictor = ws.registry.predictor(logged)
        start = time.perf_counter()
        outputs = predictor.predict(test_inputs)
        eval_seconds = time.perf_counter() - start
        metrics = held_out_metrics(outputs, corpus.test["label"], corpus.classes, corpus.majority)
        metrics["train_seconds"] = train_seconds
        metrics["eval_ms_per_text"] = 1000.0 * eval_seconds / max(len(corpus.test), 1)
        if peak is not None:
            metrics["train_peak_rss_mb"] = peak
        run.log_metrics(metrics)
    say(f"registering (accuracy {metrics.get('accuracy', float('nan')):.4f})")
    version = ws.registry.register(
        settings.model_name,
        logged,
        description=description,
        tags={
            "kind": kind,
            "device": device,
            "dataset_fingerprint": corpus.fingerprint,
            "seed": str(seed),
            "data_source": corpus.source,
        },
    )
    if alias is not None:
        version = ws.registry.set_alias(settings.model_name, alias, version.version)
    return version
