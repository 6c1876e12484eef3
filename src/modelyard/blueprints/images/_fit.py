"""The training loop: plain PyTorch, on the GPU when there is one, resumable by epoch.

- ``device="auto"`` takes CUDA when ``torch.cuda.is_available()``, else the CPU; on CUDA
  the forward pass runs in float16 autocast with a gradient scaler (mixed precision).
- On the CPU it is deterministic: the seed fixes the initial weights, each epoch's
  order is drawn from ``(seed, epoch)`` alone, and ``torch.use_deterministic_algorithms``
  holds for the loop. The same settings give the same weights, bit for bit.
- After every epoch a checkpoint (weights, optimizer, scaler, RNG states, the metrics so
  far) replaces ``last.pt`` in the checkpoint folder, atomically. A run started again with
  the same settings and data (the checkpoint's ``key``) goes on after the last finished
  epoch, and on the CPU ends with the weights an uninterrupted run ends with.

Written by hand because the loop *is* the model code a user would write; a trainer
library (Lightning, Ignite) would add a dependency for forty lines.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelyard.errors import ConfigError
from modelyard.registry.flavors.image import ImageSpec, normalise

logger = logging.getLogger(__name__)

CHECKPOINT = "last.pt"
EVAL_BATCH = 1024

OnEpoch = Callable[[int, dict[str, float]], None]


def resolve_device(wanted: str) -> str:
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; ``cuda`` without it fails."""
    available = torch.cuda.is_available()
    if wanted == "auto":
        return "cuda" if available else "cpu"
    if wanted == "cuda" and not available:
        raise ConfigError(
            "blueprint.device = 'cuda' but this machine has no CUDA device (or this torch "
            "is a CPU build); set device = 'auto' to train on the CPU here"
        )
    return wanted


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


@dataclass
class Fitted:
    network: nn.Module  # on the CPU, in eval mode
    history: list[dict[str, float]]  # one entry per epoch, from the first
    device: str
    resumed_epochs: int  # epochs taken from a checkpoint (0: trained from scratch)
    train_seconds: float  # the training passes of every epoch (evaluation excluded)
    images_per_s: float
    peak_gpu_mb: float | None = None


@contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    """Deterministic algorithms, without filling every new tensor's memory first: that
    fill guards code that reads memory it never wrote (this loop does not) and cost about
    5% of the CPU's training throughput here (bench/images.py)."""
    import torch.utils.deterministic as settings

    before = torch.are_deterministic_algorithms_enabled()
    fill = settings.fill_uninitialized_memory  # type: ignore[attr-defined]
    torch.use_deterministic_algorithms(on or before)
    settings.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        settings.fill_uninitialized_memory = fill  # type: ignore[attr-defined]


def fit(
    network: nn.Module,
    train: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    test: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    spec: ImageSpec,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: str,
    checkpoints: Path,
    key: str,
    on_epoch: OnEpoch | None = None,
) -> Fitted:
    """Train ``network`` (already built from ``seed``) on uint8 images; see the module doc."""
    network.to(device)
    cuda = device.startswith("cuda")
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    history: list[dict[str, float]] = []
    start_epoch = _resume(checkpoints / CHECKPOINT, key, network, optimizer, scaler, history)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        torch.backends.cudnn.benchmark = True
    x = torch.from_numpy(np.ascontiguousarray(train[0])).to(device)
    y = torch.from_numpy(train[1]).to(device)
    n = len(x)
    loss_of = nn.CrossEntropyLoss()
    with _deterministic(not cuda):
        for epoch in range(start_epoch, epochs):
            network.train()
            order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
            order = order.to(device)
            began = time.perf_counter()
            total, correct, seen = 0.0, 0, 0
            for first in range(0, n, batch_size):
                index = order[first : first + batch_size]
                inputs, labels = normalise(x[index], spec), y[index]
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                    logits = network(inputs)
                    loss = loss_of(logits, labels)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach()) * len(index)
                correct += int((logits.argmax(1) == labels).sum())
                seen += len(index)
            if cuda:
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - began
            metrics = {
                "train_loss": total / seen,
                "train_accuracy": correct / seen,
                **_evaluate(network, test, spec, device, loss_of),
                "epoch_seconds": seconds,
                "images_per_s": seen / seconds,
            }
            history.append(metrics)
            _save(checkpoints, key, epoch + 1, network, optimizer, scaler, history)
            if on_epoch is not None:
                on_epoch(epoch + 1, metrics)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    network.to("cpu").eval()
    train_seconds = sum(h["epoch_seconds"] for h in history)
    return Fitted(
        network=network,
        history=history,
        device=device,
        resumed_epochs=start_epoch,
        train_seconds=train_seconds,
        images_per_s=n * len(history) / train_seconds if train_seconds > 0 else 0.0,
        peak_gpu_mb=peak,
    )


def _evaluate(
    network: nn.Module,
    test: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    spec: ImageSpec,
    device: str,
    loss_of: nn.Module,
) -> dict[str, float]:
    network.eval()
    total, correct = 0.0, 0
    with torch.inference_mode():
        for first in range(0, len(test[0]), EVAL_BATCH):
            inputs = torch.from_numpy(np.ascontiguousarray(test[0][first : first + EVAL_BATCH]))
            labels = torch.from_numpy(test[1][first : first + EVAL_BATCH]).to(device)
            logits = network(normalise(inputs.to(device), spec)).float()
            total += float(loss_of(logits, labels)) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
    count = max(len(test[0]), 1)
    return {"test_loss": total / count, "test_accuracy": correct / count}


def _save(
    folder: Path,
    key: str,
    epochs: int,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    history: list[dict[str, float]],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "key": key,
        "epochs": epochs,
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history,
    }
    temporary = folder / f".{CHECKPOINT}.{os.getpid()}.tmp"
    torch.save(state, temporary)
    os.replace(temporary, folder / CHECKPOINT)  # a kill mid-write leaves the last one whole


def _resume(
    path: Path,
    key: str,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    history: list[dict[str, float]],
) -> int:
    """Load the checkpoint at ``path`` when it was written for ``key``; return the epochs
    it holds (0 when there is none to resume)."""
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged file is a reason to start over, not to fail
        logger.warning("checkpoint %s is unreadable (%s); training from the first epoch", path, exc)
        return 0
    if state.get("key") != key:
        logger.info("checkpoint %s is for other settings or data; training from scratch", path)
        return 0
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    history.extend(state["history"])
    logger.info("resuming from %s after epoch %d", path, state["epochs"])
    return int(state["epochs"])
