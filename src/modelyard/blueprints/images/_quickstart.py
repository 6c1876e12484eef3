"""``modelyard quickstart --blueprint images``: two versions trained, an A/B test served.

Trains the champion (``digits@production``) and the challenger (``digits@challenger``)
on the held-in digits, then, unless ``ab_requests`` is 0, sends that many held-out
images through the real server in process (the workspace's ``serve.toml``: dynamic
batching and the sticky A/B split by ``client_id``), labels every answer through
``POST /v1/feedback`` as a user's delayed labels would arrive, and reads the A/B report.
A version trained before with the same settings on the same images is kept (and its
alias set), not trained again; the A/B traffic is sent once per pair of versions, each
held-out image once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.blueprints import QuickstartResult, _bars
from modelyard.blueprints._settings import require_extra
from modelyard.blueprints.images._config import ImagesSettings, settings_of
from modelyard.blueprints.images._data import ImageSet, encode_png, load_images
from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelyard.registry import ModelVersion
    from modelyard.serving import ServeOptions
    from modelyard.workspace import Workspace

ALIAS = "production"
CANDIDATE = "challenger"
SPEC = "serve.toml"
CLIENTS = 100
CLIENT_PREFIX = "quickstart-"  # the quickstart's own clients, told apart from a user's
CONCURRENCY = 32
FEEDBACK_BATCH = 5_000  # labels per POST /v1/feedback (it takes up to 10,000)
MODULES = ("mlxtend", "PIL", "torch", "httpx")


def serve_spec(ws: Workspace, settings: ImagesSettings) -> tuple[Path, ServeOptions]:
    """The workspace's serve spec and its table for the model."""
    from modelyard.serving import load_spec

    path = ws.config.root / SPEC
    if not path.exists():
        raise ConfigError(
            f"{path} is missing; it is the blueprint's serve spec (batching, A/B test): "
            f"write it again with modelyard init --blueprint images {ws.config.root} (the "
            "files you have are kept)"
        )
    for options in load_spec(path, {}):
        if options.ref.partition("@")[0] == settings.model_name:
            return path, options
    raise ConfigError(
        f"{path} has no [models.{settings.model_name}] table (blueprint.model_name); "
        "rename its table to the model's name"
    )


def _traffic_sent(ws: Workspace, name: str, versions: set[int]) -> bool:
    """Whether the quickstart's clients already sent these versions their images: a rerun
    must not count the same images twice as new evidence."""
    table = ws.predictions.read(name)
    if table.num_rows == 0 or "input.client_id" not in table.column_names:
        return False
    frame = table.select(["version", "input.client_id"]).to_pandas()
    ours = frame["input.client_id"].astype(str).str.startswith(CLIENT_PREFIX)
    return bool((ours & frame["version"].isin(versions)).any())


def quickstart(ws: Workspace, progress: Progress | None = None) -> QuickstartResult:
    """Load the digits, train and register both versions, run the A/B test's first traffic."""
    from modelyard.blueprints.images._fit import resolve_device
    from modelyard.blueprints.images._train import train_variant, trained_before, training_plan
    from modelyard.release import ab_report

    require_extra("images", MODULES)
    settings = settings_of(ws)
    name = settings.model_name
    _, options = serve_spec(ws, settings)
    device = resolve_device(settings.device)  # a missing GPU is said before images are read

    task = _bars.bar(progress, "loading the images", 1)
    data = load_images(settings, ws.config.root)
    _bars.reach(progress, task, 1)
    versions: dict[str, ModelVersion] = {}
    for variant, alias in (("champion", ALIAS), ("challenger", CANDIDATE)):
        shape = getattr(settings, variant)
        _, key = training_plan(settings, data, variant, device)
        same = trained_before(ws, name, key)
        if same is not None:  # these settings on these images: that version again
            task = _bars.bar(
                progress, f"kept the {variant}: version {same.version} ({shape.filters} filters)", 1
            )
            if alias not in same.aliases:
                same = ws.registry.set_alias(name, alias, same.version)
            versions[variant] = same
            _bars.reach(progress, task, 1)
            continue
        task = _bars.bar(
            progress, f"training the {variant} ({shape.filters} filters)", shape.epochs
        )

        def epoch_done(done: int, total: int, task: Any = task) -> None:
            _bars.reach(progress, task, done)

        versions[variant] = train_variant(
            ws, settings, data, variant, alias=alias, say=lambda _: None, on_epoch=epoch_done
        )
    champion, challenger = versions["champion"], versions["challenger"]
    # Each held-out image once: a repeated image is no new evidence for the A/B report.
    count = min(settings.ab_requests, len(data.test_y))
    sent = count > 0 and _traffic_sent(ws, name, {champion.version, challenger.version})
    if count and not sent:
        task = _bars.bar(progress, f"A/B test: {count} held-out images, then their labels", count)
        asyncio.run(
            send_traffic(ws, options, data, count, lambda n: _bars.reach(progress, task, n))
        )
    summary = (
        f"champion v{champion.version} ({settings.champion.filters} filters) accuracy "
        f"{champion.metrics['accuracy']:.4f}, challenger v{challenger.version} "
        f"({settings.challenger.filters} filters) {challenger.metrics['accuracy']:.4f} on "
        f"{len(data.test_y)} held-out images; the champion trained at "
        f"{champion.metrics['train_images_per_s']:.0f} images/s on {champion.tags['device']}"
    )
    if count:
        report = ab_report(ws.predictions, name, candidate=CANDIDATE)
        again = " (its traffic was sent by an earlier run)" if sent else ""
        summary += f"; A/B test{again}: {report.reason} (modelyard release ab-report {name})"
    return QuickstartResult(
        model=name,
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
                        "image": encode_png(data.test_x[i]),
                        "client_id": f"{CLIENT_PREFIX}{i % CLIENTS}",
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
                            "label": str(labels[i]),
                        }
                    )
                done(len(answered))
            for first in range(0, len(answered), FEEDBACK_BATCH):
                chunk = answered[first : first + FEEDBACK_BATCH]
                reply = await client.post("/v1/feedback", json=chunk)
                if reply.status_code != 200:
                    raise ConfigError(
                        f"the A/B test's labels got {reply.status_code}: {reply.text}"
                    )
