"""``modelyard quickstart --blueprint images``: two versions trained, an A/B test served.

Trains the champion (``digits@production``) and the challenger (``digits@challenger``)
on the held-in digits, then, unless ``ab_requests`` is 0, sends that many held-out
images through the real server in process (the workspace's ``serve.toml``: dynamic
batching and the sticky A/B split by ``client_id``), labels every answer through
``POST /v1/feedback`` as a user's delayed labels would arrive, and reads the A/B report.
A version whose settings and data are unchanged is kept, not trained again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.blueprints import QuickstartResult
from modelyard.blueprints._settings import require_extra
from modelyard.blueprints.images._config import ImagesSettings, settings_of
from modelyard.blueprints.images._data import ImageSet, encode_png, load_images
from modelyard.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelyard.registry import ModelVersion
    from modelyard.serving import ServeOptions
    from modelyard.workspace import Workspace

ALIAS = "production"
CANDIDATE = "challenger"
SPEC = "serve.toml"
CLIENTS = 100
CONCURRENCY = 32
MODULES = ("mlxtend", "PIL", "torch", "httpx")


def serve_spec(ws: Workspace, settings: ImagesSettings) -> tuple[Path, ServeOptions]:
    """The workspace's serve spec and its table for the model."""
    from modelyard.serving import load_spec

    path = ws.config.root / SPEC
    if not path.exists():
        raise ConfigError(
            f"{path} is missing; it is the blueprint's serve spec (batching, A/B test): "
            "write it again with modelyard init --blueprint images in an empty folder, "
            "or copy it from there"
        )
    for options in load_spec(path, {}):
        if options.ref.partition("@")[0] == settings.model_name:
            return path, options
    raise ConfigError(
        f"{path} has no [models.{settings.model_name}] table (blueprint.model_name); "
        "rename its table to the model's name"
    )


def _kept(
    ws: Workspace, settings: ImagesSettings, data: ImageSet, variant: str, alias: str
) -> ModelVersion | None:
    """The version at ``alias`` when it was trained with these settings on this data."""
    from modelyard.blueprints.images._fit import resolve_device
    from modelyard.blueprints.images._train import training_plan

    _, key = training_plan(settings, data, variant, resolve_device(settings.device))
    try:
        version = ws.registry.get(f"{settings.model_name}@{alias}")
    except NotFoundError:
        return None
    return version if version.tags.get("training_key") == key else None


def quickstart(ws: Workspace, progress: Progress | None = None) -> QuickstartResult:
    """Load the digits, train and register both versions, run the A/B test's first traffic."""
    from modelyard.blueprints.images._train import train_variant
    from modelyard.release import ab_report

    require_extra("images", MODULES)
    settings = settings_of(ws)
    _, options = serve_spec(ws, settings)

    def bar(text: str, total: int) -> Any:
        return progress.add_task(text, total=total) if progress is not None else None

    def advance(task: Any, completed: int) -> None:
        if progress is not None:
            progress.update(task, completed=completed)

    task = bar("loading the images", 1)
    data = load_images(settings, ws.config.root)
    advance(task, 1)
    versions = {}
    for variant, alias in (("champion", ALIAS), ("challenger", CANDIDATE)):
        shape = getattr(settings, variant)
        task = bar(f"training the {variant} (width {shape.width})", shape.epochs)
        kept = _kept(ws, settings, data, variant, alias)
        if kept is not None:
            versions[variant] = kept
            advance(task, shape.epochs)
            continue

        def epoch_done(done: int, total: int, task: Any = task) -> None:
            advance(task, done)

        versions[variant] = train_variant(
            ws, settings, data, variant, alias=alias, say=lambda _: None, on_epoch=epoch_done
        )
    if settings.ab_requests:
        task = bar(
            f"A/B test: {settings.ab_requests} held-out images, then labels", settings.ab_requests
        )
        asyncio.run(
            send_traffic(ws, options, data, settings.ab_requests, lambda n: advance(task, n))
        )
    champion, challenger = versions["champion"], versions["challenger"]
    summary = (
        f"champion v{champion.version} (width {settings.champion.width}) accuracy "
        f"{champion.metrics['accuracy']:.4f}, challenger v{challenger.version} (width "
        f"{settings.challenger.width}) {challenger.metrics['accuracy']:.4f} on "
        f"{len(data.test_y)} held-out images; trained at "
        f"{champion.metrics['train_images_per_s']:.0f} images/s on {champion.tags['device']}"
    )
    if settings.ab_requests:
        report = ab_report(ws.predictions, settings.model_name, candidate=CANDIDATE)
        summary += (
            f"; A/B test: {report.reason} (modelyard release ab-report {settings.model_name})"
        )
    return QuickstartResult(
        model=settings.model_name,
        alias=ALIAS,
        version=champion,
        run_id=champion.run_id or "",
        summary=summary,
        example={"image": encode_png(data.test_x[0]), "client_id": "client-1"},
        spec=SPEC,
    )


async def send_traffic(
    ws: Workspace, options: ServeOptions, data: ImageSet, count: int, done: Any
) -> None:
    """``count`` held-out images (each from one of ``CLIENTS`` clients), ``CONCURRENCY`` at
    a time, through the server in process; then every answer's true label as feedback."""
    import httpx

    from modelyard.blueprints.images._data import encode_png as png
    from modelyard.serving import create_app

    app = create_app(ws.registry, [options], prediction_log=ws.predictions, poll_interval_s=0)
    labels = data.labels(data.test_y)
    answered: list[dict[str, Any]] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quickstart") as client:
            url = f"/v1/models/{options.ref.partition('@')[0]}/predict"
            for first in range(0, count, CONCURRENCY):
                batch = range(first, min(first + CONCURRENCY, count))
                bodies = [
                    {
                        "image": png(data.test_x[i % len(labels)]),
                        "client_id": f"client-{i % CLIENTS}",
                    }
                    for i in batch
                ]
                replies = await asyncio.gather(*(client.post(url, json=b) for b in bodies))
                for i, reply in zip(batch, replies, strict=True):
                    if reply.status_code != 200:
                        raise ConfigError(f"the A/B traffic got {reply.status_code}: {reply.text}")
                    answered.append(
                        {
                            "request_id": reply.json()["request_id"],
                            "label": str(labels[i % len(labels)]),
                        }
                    )
                done(len(answered))
            reply = await client.post("/v1/feedback", json=answered)
            if reply.status_code != 200:
                raise ConfigError(f"the A/B test's labels got {reply.status_code}: {reply.text}")
