"""``modelyard build``: a container image of one registered model.

Writes the build context (always), then builds it with podman or docker when ``--image``
is given. Every check runs before the first write, so bad input is one line and an
untouched output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from modelyard.cli._common import WorkspaceOpt, console, open_workspace


@contextmanager
def _steps() -> Iterator[tuple[Progress, Callable[[str], None]]]:
    """A progress display where each step completes the one before it.

    It appears with the first step, so an input error before any work prints only
    its one line.
    """
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    progress = Progress(*columns, console=console, transient=False)
    tasks: list[TaskID] = []

    def step(text: str) -> None:
        if tasks:
            progress.update(tasks[-1], completed=1)
        else:
            progress.start()
        tasks.append(progress.add_task(escape(text), total=1))

    try:
        yield progress, step
    finally:
        if tasks:
            progress.update(tasks[-1], completed=1)
            progress.stop()


def build(
    ref: str = typer.Argument(..., help="the model: NAME@ALIAS or NAME/VERSION"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the build context"),
    image: str = typer.Option(
        None, "--image", help="also build the image, tagged IMAGE, with podman or docker"
    ),
    base_image: str = typer.Option(
        None,
        "--base-image",
        help="base with python3 and venv (default: python:X.Y-slim, X.Y this Python)",
    ),
    force: bool = typer.Option(False, "--force", help="replace a non-empty output folder"),
    wheelhouse: Path = typer.Option(
        None, "--wheelhouse", help="wheel cache (default: ~/.cache/modelyard/wheelhouse)"
    ),
    packages: list[str] = typer.Option(
        None, "--with", help="another installed distribution the model needs (repeatable)"
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="with --image: no layer cache"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Write a hermetic build context for a model's container image, and build it.

    The context holds a Dockerfile (a venv on a slim Python base, non-root user,
    HEALTHCHECK on /healthz), a wheelhouse with every dependency at the versions
    installed here, a workspace with only this model version, and an entrypoint.
    X.Y in the default base image is this Python's version, which the wheels are for.
    """
    from modelyard.release import DEFAULT_BASE_IMAGE, build_image, write_context

    ws = open_workspace(workspace)
    base = base_image or DEFAULT_BASE_IMAGE
    options: dict[str, Any] = {
        "base_image": base,
        "force": force,
        "wheelhouse": wheelhouse,
        "packages": packages or (),
    }
    with _steps() as (progress, step):
        if image is None:
            context = write_context(ws, ref, output, progress=step, **options)
        else:

            def show(line: str) -> None:
                progress.console.print(line, style="dim", markup=False, highlight=False)

            context = build_image(
                ws,
                ref,
                output,
                tag=image,
                no_cache=no_cache,
                progress=step,
                on_output=show,
                **options,
            )
    v = context.model
    console.print(
        f"[bold]wrote[/] the build context of {v.name} version {v.version} ({context.ref}) "
        f"to {escape(str(context.folder))}: Dockerfile, wheelhouse/ ({len(context.wheels)} "
        f"wheels for Python {context.python}), workspace/, entrypoint.sh",
        soft_wrap=True,
    )
    port = context.port
    if context.image is None:
        console.print(
            f"build it with: podman build --format docker -t TAG {escape(str(context.folder))}"
            f"   (or: docker build -t TAG {escape(str(context.folder))})",
            soft_wrap=True,
            highlight=False,
        )
        return
    console.print(f"[bold]built[/] {escape(context.image)} with {context.engine}")
    console.print(
        f"run it with: {context.engine} run --rm -p {port}:{port} {escape(context.image)}",
        soft_wrap=True,
        highlight=False,
    )
