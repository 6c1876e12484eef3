"""What every command shares: the workspace option, consoles, and table helpers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.console import Console

from modelyard.errors import ConfigError
from modelyard.workspace import Workspace

console = Console()
err_console = Console(stderr=True)

WorkspaceOpt = typer.Option(
    ".",
    "--workspace",
    "-w",
    envvar="MODELYARD_WORKSPACE",
    help="workspace folder (holds modelyard.toml)",
    show_default=True,
)

# Every command that takes a time has this flag: a time without a zone is refused
# unless it is given (README, "Times"); a bare day is always that day in UTC.
AssumeUtcOpt = typer.Option(
    False, "--assume-utc", help="read times given without a zone as UTC (else refused)"
)


# Workspaces a command opened, closed by ``main`` when the command ends (in a test that
# runs the CLI in process, an open PostgreSQL connection would otherwise outlive it).
_opened: list[Workspace] = []


def open_workspace(path: str) -> Workspace:
    """The workspace at ``path``; a folder that is none fails here, before any output."""
    ws = Workspace(path)
    ws.config  # noqa: B018 - reading the config checks the folder is a workspace
    _opened.append(ws)
    return ws


def check_port_option(option: str, port: int | None) -> None:
    """A port option outside 1-65535 is a one-line error, not a traceback from bind()."""
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{option} {port}: expected a port from 1 to 65535; pick another")


def close_workspaces() -> None:
    while _opened:
        _opened.pop().close()


def fmt_time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
