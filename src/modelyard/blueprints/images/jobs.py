"""The images blueprint's job: train one version (``champion`` or ``challenger`` shape)
and point an alias at it; ``modelyard jobs run train_challenger`` retrains the
challenger the A/B test serves."""

from __future__ import annotations

from typing import Any

from modelyard.blueprints._settings import require_extra
from modelyard.blueprints.images._config import settings_of
from modelyard.errors import ConfigError
from modelyard.jobs import JobContext


def train(ctx: JobContext) -> dict[str, Any]:
    """Train ``params.variant`` (default challenger) on the workspace's images and set
    ``params.alias`` (default challenger) to the new version.

    Interrupted (killed, timed out), the next attempt resumes after the last finished epoch.
    A version already trained with these settings on these images is pointed at instead
    of trained again, unless ``params.force`` is true.
    """
    from modelyard.blueprints.images._data import load_images
    from modelyard.blueprints.images._fit import resolve_device
    from modelyard.blueprints.images._train import (
        VARIANTS,
        train_variant,
        trained_before,
        training_plan,
    )

    variant = str(ctx.params.get("variant", "challenger"))
    alias = str(ctx.params.get("alias", "challenger"))
    if variant not in VARIANTS:
        raise ConfigError(f"params.variant = {variant!r}; use one of {', '.join(VARIANTS)}")
    require_extra("images", ("mlxtend", "PIL", "torch"))
    ws = ctx.workspace
    settings = settings_of(ws)
    device = resolve_device(settings.device)  # before the images are read
    data = load_images(settings, ws.config.root)
    _, key = training_plan(settings, data, variant, device)
    same = None if ctx.params.get("force") else trained_before(ws, settings.model_name, key)
    if same is not None:  # deterministic: training again would give this version again
        version = ws.registry.set_alias(settings.model_name, alias, same.version)
        ctx.log.info(
            "version %d was trained with these settings on these images; %s@%s points at it "
            "(params.force = true trains anew)",
            same.version,
            settings.model_name,
            alias,
        )
    else:
        version = train_variant(ws, settings, data, variant, alias=alias, say=ctx.log.info)
    return {"version": version.version, "accuracy": version.metrics.get("accuracy")}
