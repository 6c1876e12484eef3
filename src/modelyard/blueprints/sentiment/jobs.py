"""Job functions of the sentiment workspace: ``[jobs.NAME] function = "…jobs:NAME"``.

Each opens the job's workspace, reads its ``[blueprint]`` settings and trains one variant.
A job registers a new version and points ``params.alias`` at it (default ``staging``),
never ``production``: promotion goes through ``modelyard release check`` / ``promote``.
"""

from __future__ import annotations

from typing import Any

from modelyard.blueprints.sentiment import _transformer
from modelyard.blueprints.sentiment._baseline import train_baseline as _train_baseline
from modelyard.jobs import JobContext
from modelyard.registry import ModelVersion

__all__ = ["train_baseline", "train_frozen", "train_transformer"]

DEFAULT_ALIAS = "staging"


def _alias(ctx: JobContext) -> str | None:
    alias = ctx.params.get("alias", DEFAULT_ALIAS)
    return str(alias) if alias else None  # alias = "" registers without an alias


def train_baseline(ctx: JobContext) -> None:
    """Train the TF-IDF + logistic-regression baseline and register it (alias: staging)."""
    _report(ctx, _train_baseline(ctx.workspace, alias=_alias(ctx), progress=ctx.log.info))


def train_transformer(ctx: JobContext) -> None:
    """Fine-tune MiniLM and register it (alias: staging).

    ``params``: epochs (2), batch_size (32), learning_rate (5e-5), max_tokens (128),
    max_rows (all), device (CUDA when present, else cpu), onnx (true, "int8" or false).
    """
    options = _options(
        ctx, "epochs", "batch_size", "learning_rate", "max_tokens", "max_rows", "device", "onnx"
    )
    version = _transformer.train_transformer(
        ctx.workspace, alias=_alias(ctx), progress=ctx.log.info, **options
    )
    _report(ctx, version)


def train_frozen(ctx: JobContext) -> None:
    """MiniLM frozen + a logistic-regression head (alias: staging): the gate should block it."""
    options = _options(ctx, "max_tokens", "device", "onnx")
    frozen = _transformer.train_frozen(
        ctx.workspace, alias=_alias(ctx), progress=ctx.log.info, **options
    )
    _report(ctx, frozen)


def _options(ctx: JobContext, *names: str) -> dict[str, Any]:
    return {n: ctx.params[n] for n in names if n in ctx.params}


def _report(ctx: JobContext, version: ModelVersion) -> None:
    ctx.log.info(
        "registered %s version %d (accuracy %.4f) as %s",
        version.name,
        version.version,
        version.metrics.get("accuracy") or float("nan"),
        ", ".join(version.aliases) or "no alias",
    )
