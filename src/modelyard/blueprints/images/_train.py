"""Train one version of the image model in a tracked run, measure it, register it.

What the registry entry carries, captured without the user asking:

- metrics of the *logged* model on the held-out images (as a server loads it):
  ``accuracy``, ``precision_<class>`` and ``recall_<class>``, and the confusion matrix
  as the artifact ``confusion_matrix.json`` (rows: true class, columns: predicted);
- per-epoch ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``,
  ``epoch_seconds`` and ``images_per_s`` as the run's metric history (step = epoch);
- resource use, as metrics and in ``resources.json``: ``train_seconds``,
  ``train_images_per_s``, ``train_peak_rss_mb`` (the process's high-water mark, reset
  as the run starts),
  ``train_peak_gpu_mb`` on a GPU, ``parameters``, ``model_size_mb`` (the logged
  artifact), and ``latency_ms_batch_<n>`` (the median of a batch of ``n`` PNGs through
  the logged model, decoding included); the device's name is a tag of the version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard.blueprints._resources import peak_rss_mb, reset_peak_rss
from modelyard.blueprints.images._config import ImagesSettings
from modelyard.blueprints.images._data import ImageSet, dataset_rows, requests_of, spec_of
from modelyard.contracts import Field, Schema
from modelyard.registry import ModelVersion, Signature
from modelyard.registry.flavors.image import ImageSpec

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

logger = logging.getLogger(__name__)

LATENCY_BATCHES = (1, 8, 32, 128)
LATENCY_REPEATS = 5
VARIANTS = ("champion", "challenger")


def service_signature(classes: list[str], spec: ImageSpec) -> Signature:
    """What the service takes (an image, the caller's id) and answers."""
    inputs = Schema.of(
        Field(
            name="image",
            dtype="string",
            min_length=1,
            # Far past the decoder's own limit (spec.max_bytes, a one-line 422 in MiB),
            # which so answers first; the server's body limit still caps a request.
            max_length=4 * ((spec.max_bytes * 4) // 3 + 4),
            description="a PNG or JPEG file, base64-encoded (or a multipart file upload)",
        ),
        Field(
            name="client_id",
            dtype="string",
            nullable=True,
            max_length=200,
            description="the caller's id: an A/B test keeps one client on one version",
        ),
    )
    outputs = Schema.of(
        Field(name="prediction", dtype="string", categories=tuple(classes)),
        Field(name="probability", dtype="float64", min=0.0, max=1.0),
        *(Field(name=f"probability_{c}", dtype="float64", min=0.0, max=1.0) for c in classes),
    )
    return Signature(inputs=inputs, outputs=outputs)


def checkpoint_key(params: dict[str, Any], fingerprint: str) -> str:
    """What a checkpoint must match to be resumed: every setting and the data."""
    text = json.dumps({**params, "data": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def held_out_metrics(
    predicted: np.ndarray[Any, Any], truth: np.ndarray[Any, Any], classes: list[str]
) -> tuple[dict[str, float], list[list[int]]]:
    """accuracy, per-class precision and recall, and the confusion matrix (true x predicted)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(classes)
    precision, recall, _, _ = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    metrics = {"accuracy": float(np.mean(predicted == truth))}
    for i, c in enumerate(labels):
        metrics[f"precision_{c}"] = float(precision[i])
        metrics[f"recall_{c}"] = float(recall[i])
    matrix = confusion_matrix(truth, predicted, labels=labels)
    return metrics, matrix.tolist()


def batch_latency(predict: Callable[[pd.DataFrame], Any], rows: pd.DataFrame) -> dict[str, float]:
    """Median milliseconds of one call with a batch of each of ``LATENCY_BATCHES`` rows."""
    out: dict[str, float] = {}
    for size in LATENCY_BATCHES:
        batch = pd.concat([rows] * (size // len(rows) + 1), ignore_index=True).head(size)
        predict(batch)  # warm: the first call pays for lazy set-up
        times = []
        for _ in range(LATENCY_REPEATS):
            began = time.perf_counter()
            predict(batch)
            times.append((time.perf_counter() - began) * 1000)
        out[f"latency_ms_batch_{size}"] = statistics.median(times)
    return out


def training_plan(
    settings: ImagesSettings, data: ImageSet, variant: str, device: str
) -> tuple[dict[str, Any], str]:
    """The run's params, and the key a checkpoint (and a version to reuse) must match."""
    shape = getattr(settings, variant)
    spec = spec_of(settings)
    params: dict[str, Any] = {
        "variant": variant,
        "network": "DigitNet",
        "filters": shape.filters,
        "epochs": shape.epochs,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "seed": settings.seed,
        "image_size": f"{spec.channels}x{spec.height}x{spec.width}",
        "train_rows": len(data.train_y),
        "test_rows": len(data.test_y),
        "data_source": data.source,
    }
    return params, checkpoint_key({**params, "device": device}, data.fingerprint)


def trained_before(ws: Workspace, name: str, key: str) -> ModelVersion | None:
    """The newest version of ``name`` trained with ``key`` (the same settings and data)."""
    from modelyard.errors import NotFoundError

    try:
        versions = ws.registry.versions(name)
    except NotFoundError:
        return None
    same = [v for v in versions if v.tags.get("training_key") == key]
    return same[-1] if same else None


def train_variant(
    ws: Workspace,
    settings: ImagesSettings,
    data: ImageSet,
    variant: str,
    *,
    alias: str | None = None,
    say: Callable[[str], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> ModelVersion:
    """Train ``variant`` (champion or challenger), register it, point ``alias`` at it.

    ``on_epoch(done, total)`` follows the epochs. A run interrupted mid-training resumes
    from its last finished epoch when called again with the same settings and data.
    """
    import torch

    import modelyard
    from modelyard.blueprints.images._fit import device_name, fit, resolve_device
    from modelyard.blueprints.images._network import DigitNet, parameter_count
    from modelyard.registry.flavors.image import ImageClassifier
    from modelyard.tracking import log_holdout

    shape = getattr(settings, variant)
    spec = spec_of(settings)
    device = resolve_device(settings.device)
    name = settings.model_name
    params, key = training_plan(settings, data, variant, device)
    checkpoints = ws.config.root / ".modelyard" / "checkpoints" / f"{name}-{variant}"
    report = say or logger.info
    modelyard.seed_everything(settings.seed)
    torch.manual_seed(settings.seed)
    network = DigitNet(spec.channels, len(data.classes), shape.filters, spec.height, spec.width)
    test_rows = requests_of(data.test_x)
    truth = data.labels(data.test_y)
    tags = {
        "blueprint": "images",
        "variant": variant,
        "device": device,
        "device_name": device_name(device),
    }
    reset_peak_rss()
    with ws.start_run(f"{name}-{variant}", params=params, tags=tags, seed=settings.seed) as run:
        run.log_dataset("train", dataset_rows(data, data.train_x, data.train_y), context="train")
        log_holdout(run, test_rows.assign(label=truth), target="label", name="test")

        def epoch_done(epoch: int, metrics: dict[str, float]) -> None:
            run.log_metrics(metrics, step=epoch)
            report(
                f"{name}-{variant}: epoch {epoch}/{shape.epochs} test accuracy "
                f"{metrics['test_accuracy']:.4f}, {metrics['images_per_s']:.0f} images/s"
            )
            if on_epoch is not None:
                on_epoch(epoch, shape.epochs)

        report(f"{name}-{variant}: training {shape.filters} filters on {device}")
        fitted = fit(
            network,
            (data.train_x, data.train_y),
            (data.test_x, data.test_y),
            spec,
            epochs=shape.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
            device=device,
            checkpoints=checkpoints,
            key=key,
            on_epoch=epoch_done,
        )
        for epoch, metrics in enumerate(fitted.history[: fitted.resumed_epochs], start=1):
            run.log_metrics(metrics, step=epoch)  # epochs of the interrupted run, kept
        if fitted.resumed_epochs:
            run.set_tag("resumed_after_epoch", fitted.resumed_epochs)
        peak = peak_rss_mb()
        classifier = ImageClassifier(fitted.network, data.classes, spec)
        example = requests_of(data.train_x[:5])  # encoding all 4,000 would be waste
        logged = ws.registry.log_model(
            run,
            classifier,
            signature=service_signature(data.classes, spec),
            input_example=example,
        )
        report(f"{name}-{variant}: scoring the logged model on {len(truth)} held-out images")
        predictor = ws.registry.predictor(logged)
        outputs = predictor.predict(test_rows)
        metrics, matrix = held_out_metrics(
            np.asarray(outputs["prediction"], dtype=object), truth, data.classes
        )
        resources: dict[str, float] = {
            "train_seconds": fitted.train_seconds,
            "train_images_per_s": fitted.images_per_s,
            "parameters": float(parameter_count(fitted.network)),
            "model_size_mb": logged.size / 2**20,
            **batch_latency(predictor.predict, test_rows.head(32)),
        }
        if peak is not None:
            resources["train_peak_rss_mb"] = peak
        if fitted.peak_gpu_mb is not None:
            resources["train_peak_gpu_mb"] = fitted.peak_gpu_mb
        run.log_metrics({**metrics, **resources}, step=shape.epochs)
        run.log_dict(
            {
                "labels": data.classes,
                "rows": "true class",
                "columns": "predicted",
                "matrix": matrix,
            },
            "confusion_matrix.json",
        )
        run.log_dict(
            {**resources, "device": device, "device_name": device_name(device)}, "resources.json"
        )
    version = ws.registry.register(
        name,
        logged,
        description=f"DigitNet, {shape.filters} filters, {shape.epochs} epochs ({variant})",
        tags={
            "variant": variant,
            "device": device,
            "device_name": device_name(device),
            "dataset_fingerprint": data.fingerprint,
            "data_source": data.source,
            "seed": str(settings.seed),
            "training_key": key,
        },
    )
    if alias is not None:
        version = ws.registry.set_alias(name, alias, version.version)
    # The version holds the weights now: a later run trains afresh.
    shutil.rmtree(checkpoints, ignore_errors=True)
    report(f"{name}-{variant}: version {version.version}, accuracy {metrics['accuracy']:.4f}")
    return version
