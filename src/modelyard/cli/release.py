"""``modelyard release …``: gates, promotion, canary rollout, rollback, and their record."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, fmt_time, fmt_value, open_workspace

app = typer.Typer(
    help="Release models: gate a candidate, promote, canary, roll back.", no_args_is_help=True
)


@app.command("history")
def history(
    name: str = typer.Argument(None, help="model name (default: every model)"),
    limit: int = typer.Option(50, "--limit", min=1, help="newest actions to show"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Every release action: who, when, from/to, and whether its gates passed."""
    from modelyard.release import release_history

    ws = open_workspace(workspace)
    table = Table(title="release history")
    for col in ("when", "model", "action", "actor", "alias", "from", "to", "passed", "reason"):
        table.add_column(col, overflow="fold")
    for r in release_history(ws.metadata, name, limit=limit):
        passed = "" if r.passed is None else ("yes" if r.passed else "[red]no[/]")
        table.add_row(
            fmt_time(r.at),
            r.model,
            r.action,
            escape(r.actor),
            r.alias or "",
            fmt_value(r.from_version),
            fmt_value(r.to_version),
            passed,
            escape(r.reason or ""),
        )
    console.print(table)
