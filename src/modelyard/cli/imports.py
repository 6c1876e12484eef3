"""``modelyard import …``: bring another tool's records into the workspace."""

from __future__ import annotations

import typer
from rich.markup import escape

from modelyard.cli._common import WorkspaceOpt, console, open_workspace
from modelyard.cli._progress import progress

app = typer.Typer(help="Copy another tool's store into this workspace.", no_args_is_help=True)


@app.command("mlflow")
def mlflow_store(
    source: str = typer.Option(
        ..., "--from", help="the MLflow store: ./mlruns, sqlite:///mlflow.db, http://host:5000"
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Copy an MLflow tracking store (experiments, runs with metric histories, params, tags,
    artifacts, registered models, versions and aliases); running it again copies only what
    is new."""
    import os

    from modelyard.server import import_mlflow

    # MLflow's client retries an unreachable server 7 times with backoff (minutes); a
    # wrong --from should say so in seconds. The user's own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    ws = open_workspace(workspace)
    with progress() as bars:
        tasks: dict[str, object] = {}

        def advance(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(f"importing {what}", total=total)
            bars.update(tasks[what], completed=done)  # type: ignore[arg-type]

        summary = import_mlflow(ws, source, progress=advance)
    console.print(
        escape(
            f"imported {summary.runs} runs ({summary.runs_skipped} already here), "
            f"{summary.metric_points} metric points, {summary.artifacts} artifacts, "
            f"from {summary.experiments} experiments; {summary.versions} model versions of "
            f"{summary.models} models ({summary.versions_skipped} already here), "
            f"{summary.aliases} aliases"
        )
    )
    for old, new in sorted(summary.renumbered.items()):
        console.print(escape(f"  {old} is version {new} here (the workspace had that number)"))
    for alias, (here, theirs) in sorted(summary.aliases_kept.items()):
        console.print(
            escape(
                f"  {alias} stays at version {here} (the store's points at the copy {theirs}); "
                f"move it with 'modelyard models alias' if you want that one"
            )
        )
