"""The ``modelyard`` command line (Typer + rich).

Every ``ModelyardError`` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli import features, models, runs
from modelyard.cli._common import WorkspaceOpt, console, err_console, open_workspace
from modelyard.cli.quickstart import quickstart
from modelyard.config import SETTINGS
from modelyard.errors import ModelyardError

app = typer.Typer(
    name="modelyard",
    help="modelyard: from raw data to a monitored model service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(features.app, name="features")
app.command("quickstart")(quickstart)


@app.command()
def init(folder: Path = typer.Argument(Path("."), help="workspace folder")) -> None:
    """Create a workspace: a folder with a commented modelyard.toml."""
    from modelyard.workspace import Workspace

    existed = (folder / "modelyard.toml").exists()
    ws = Workspace.init(folder)
    ws.metadata  # noqa: B018 - creates the database and applies migrations now
    verb = "kept existing" if existed else "wrote"
    console.print(f"{verb} {folder / 'modelyard.toml'}; metadata at {ws.config['metadata.url']}")


@config_app.command("show")
def config_show(workspace: str = WorkspaceOpt) -> None:
    """Each setting's effective value and where it came from."""
    cfg = open_workspace(workspace).config
    table = Table(title=f"configuration of {cfg.root}")
    for col in ("key", "value", "source", "env variable"):
        table.add_column(col, overflow="fold")
    for s in SETTINGS:
        table.add_row(s.key, escape(repr(cfg[s.key])), escape(cfg.source(s.key)), s.env)
    console.print(table)


@app.command()
def serve(
    refs: list[str] = typer.Argument(..., help="models to serve: NAME@ALIAS or NAME/VERSION"),
    host: str = typer.Option(None, "--host", help="default: serve.host"),
    port: int = typer.Option(None, "--port", help="default: serve.port"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Serve models over HTTP: POST /v1/models/NAME/predict, /healthz, /readyz, /docs."""
    from modelyard.serving import serve as run_server
    from modelyard.workspace import Workspace

    ws = Workspace(workspace, serve_host=host, serve_port=port)
    run_server(
        ws.registry,
        refs,
        host=ws.config["serve.host"],
        port=ws.config["serve.port"],
        log_level=ws.config["serve.log_level"],
    )


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    try:
        app(args=argv, prog_name="modelyard")
    except ModelyardError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
