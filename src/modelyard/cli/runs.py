"""``modelyard runs list|show|compare``."""

from __future__ import annotations

import typer
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, fmt_time, fmt_value, open_workspace
from modelyard.errors import InvalidInputError

app = typer.Typer(help="Inspect training runs.", no_args_is_help=True)


@app.command("list")
def list_runs(
    filter: str = typer.Option(None, "--filter", "-f", help='e.g. "metrics.auc > 0.9"'),
    order_by: str = typer.Option(None, "--order-by", "-o", help="e.g. 'metrics.auc DESC'"),
    experiment: str = typer.Option(None, "--experiment", "-e"),
    limit: int = typer.Option(20, "--limit", "-n", min=1),
    workspace: str = WorkspaceOpt,
) -> None:
    """List runs, newest first, or filtered and ordered."""
    runs = open_workspace(workspace).runs.search(
        filter, order_by=order_by, experiment=experiment, max_results=limit
    )
    metric_keys = sorted({k for r in runs for k in r.metrics})[:6]
    table = Table(title=f"{len(runs)} run(s)")
    for col in ("run id", "name", "experiment", "status", "started", *metric_keys):
        table.add_column(col, overflow="fold")
    for r in runs:
        table.add_row(
            r.run_id,
            r.name,
            r.experiment,
            r.status,
            fmt_time(r.start_time),
            *(fmt_value(r.metrics.get(k)) for k in metric_keys),
        )
    console.print(table)


@app.command("experiments")
def list_experiments(workspace: str = WorkspaceOpt) -> None:
    """Every experiment with its number of runs and its newest run, newest first."""
    found = open_workspace(workspace).runs.experiments()
    table = Table(title=f"{len(found)} experiment(s)")
    for col in ("experiment", "runs", "last run"):
        table.add_column(col, overflow="fold")
    for e in found:
        table.add_row(e.name, str(e.runs), fmt_time(e.last_run))
    console.print(table)


@app.command("show")
def show_run(
    run_id: str,
    history: list[str] = typer.Option(
        None, "--history", help="a metric's value at every step, e.g. test_accuracy (repeatable)"
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Everything recorded about one run (and, with --history, metrics step by step)."""
    ws = open_workspace(workspace)
    r = ws.runs.get(run_id)
    table = Table(title=f"run {r.run_id}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("name", r.name),
        ("experiment", r.experiment),
        ("status", r.status),
        ("error", r.error),
        ("started", fmt_time(r.start_time)),
        ("duration s", r.duration_s),
        ("seed", r.seed),
        ("git commit", r.git_commit),
        ("python", r.environment.get("python")),
        ("platform", r.environment.get("platform")),
        ("packages", r.environment.get("packages")),
    ]
    rows += [(f"param {k}", v) for k, v in sorted(r.params.items())]
    rows += [(f"metric {k}", v) for k, v in sorted(r.metrics.items())]
    rows += [(f"tag {k}", v) for k, v in sorted(r.tags.items())]
    rows += [
        (
            f"dataset {d['name']}",
            f"{d['fingerprint']} ({_rows(d['rows'])}{d['context'] or 'no context'})",
        )
        for d in r.datasets
    ]
    rows += [(f"artifact {a['path']}", f"{a['digest']} ({a['kind']})") for a in r.artifacts]
    for key, value in rows:
        if value is not None and value != "":
            table.add_row(key, fmt_value(value))
    console.print(table)
    for key in history or []:
        points = ws.runs.history(r.run_id, key)
        if not points:
            raise InvalidInputError(
                f"run {r.run_id} has no metric {key!r}; its metrics are "
                f"{', '.join(sorted(r.metrics)) or 'none'}"
            )
        steps = Table(title=f"{key} by step")
        for column in ("step", "value", "logged at"):
            steps.add_column(column, justify="right")
        for point in points:
            steps.add_row(str(point.step), fmt_value(point.value), fmt_time(point.timestamp))
        console.print(steps)


@app.command("compare")
def compare_runs(
    run_ids: list[str] = typer.Argument(..., help="two or more run ids"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Params and metrics of several runs side by side; differing rows are highlighted."""
    ws = open_workspace(workspace)
    runs = [ws.runs.get(rid) for rid in run_ids]
    table = Table(title="run comparison")
    table.add_column("")
    for r in runs:
        table.add_column(f"{r.name}\n{r.run_id[:12]}", overflow="fold")
    for kind in ("params", "metrics"):
        keys = sorted({k for r in runs for k in getattr(r, kind)})
        for key in keys:
            values = [fmt_value(getattr(r, kind).get(key)) for r in runs]
            style = "yellow" if len(set(values)) > 1 else None
            table.add_row(f"{kind[:-1]} {key}", *values, style=style)
    console.print(table)


def _rows(count: int | None) -> str:
    return "" if count is None else f"{count} rows, "  # an MLflow dataset has no count
