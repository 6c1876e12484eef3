"""``modelyard features plan|apply|list|show|get-historical|materialize|get-online|push|
backfill``.

Definitions live in Python files (``features.py`` in the workspace by default); every
Entity, FeatureView and FeatureService bound at module level is picked up, in order.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any, Literal, cast

import typer
from rich.table import Table

from modelyard.cli._common import AssumeUtcOpt, WorkspaceOpt, console, open_workspace
from modelyard.errors import InvalidInputError, NotFoundError

app = typer.Typer(help="Feature definitions and training sets.", no_args_is_help=True)

FilesArg = typer.Argument(None, help="Python files with the definitions (default: features.py)")


@app.callback()
def _needs_duckdb() -> None:
    # DuckDB is the optional 'features' extra: without it every command here says so.
    from modelyard.features import require_duckdb

    require_duckdb()


def load_definitions(files: list[Path] | None, workspace: str) -> list[Any]:
    from modelyard.features import Entity, FeatureService, FeatureView

    paths = files or [Path(workspace) / "features.py"]
    found: list[Any] = []
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(
                f"definitions file {str(path)!r} does not exist; pass the file that defines "
                "your entities and feature views"
            )
        try:
            namespace = runpy.run_path(str(path))
        except Exception as exc:  # the user's file failed: say where, without a traceback
            raise InvalidInputError(f"{path}: {type(exc).__name__}: {exc}") from None
        for value in namespace.values():
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                if isinstance(item, Entity | FeatureView | FeatureService) and item not in found:
                    found.append(item)
    if not found:
        raise InvalidInputError(
            f"no Entity, FeatureView or FeatureService found in {', '.join(map(str, paths))}"
        )
    # Entities first, then views, then services, so that a service's views exist.
    order = {Entity: 0, FeatureView: 1, FeatureService: 2}
    return sorted(found, key=lambda o: order[type(o)])


def _changes_table(changes: list[Any], title: str) -> Table:
    table = Table(title=title)
    for col in ("action", "kind", "name", "version", "changed"):
        table.add_column(col)
    style = {"create": "green", "update": "yellow", "unchanged": "dim"}
    for c in changes:
        table.add_row(
            c.action, c.kind, c.name, str(c.version), ", ".join(c.changed), style=style[c.action]
        )
    return table


@app.command("plan")
def plan(files: list[Path] = FilesArg, workspace: str = WorkspaceOpt) -> None:
    """Show what 'apply' would create or change (writes nothing)."""
    ws = open_workspace(workspace)
    console.print(_changes_table(ws.features.plan(load_definitions(files, workspace)), "plan"))


@app.command("apply")
def apply(files: list[Path] = FilesArg, workspace: str = WorkspaceOpt) -> None:
    """Store new and changed definitions; a changed view gets a new version."""
    ws = open_workspace(workspace)
    console.print(_changes_table(ws.features.apply(load_definitions(files, workspace)), "applied"))


@app.command("list")
def list_definitions(workspace: str = WorkspaceOpt) -> None:
    """Every entity, feature view and service with its latest version."""
    table = Table(title="feature definitions")
    for col in ("kind", "name", "latest version"):
        table.add_column(col)
    for kind, name, version in open_workspace(workspace).features.list():
        table.add_row(kind, name, str(version))
    console.print(table)


@app.command("show")
def show(
    name: str,
    version: int = typer.Option(None, "--version", help="default: the latest"),
    workspace: str = WorkspaceOpt,
) -> None:
    """One definition in full (a view, a service or an entity, looked up in that order)."""
    store = open_workspace(workspace).features
    for getter in (store.view, store.service, store.entity):
        try:
            spec = getter(name, version).spec()
        except NotFoundError:
            continue
        console.print_json(json.dumps(_shown(spec)))
        return
    store.view(name, version)  # raises with the nearest-name hint


def _shown(spec: Any) -> Any:
    """``spec`` with the password of every source URL hidden (``PostgresSource(url)``)."""
    from modelyard._redact import redact

    if isinstance(spec, dict):
        return {
            k: redact(v) if k == "url" and isinstance(v, str) else _shown(v)
            for k, v in spec.items()
        }
    return [_shown(v) for v in spec] if isinstance(spec, list) else spec


@app.command("get-historical")
def get_historical(
    entities: Path = typer.Option(..., "--entities", help="Parquet file of entity rows"),
    features: list[str] = typer.Option(
        ..., "--features", "-f", help="a service name, or view:feature (repeatable)"
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet file to write"),
    timestamp_field: str = typer.Option("event_timestamp", "--timestamp-field"),
    assume_utc: bool = typer.Option(
        False, "--assume-utc", help="read entity times without a zone as UTC (else refused)"
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Write a point-in-time correct training set to Parquet."""
    import pyarrow.parquet as pq

    if not entities.is_file():
        raise InvalidInputError(f"entity file {str(entities)!r} does not exist")
    refs: Any = features[0] if len(features) == 1 and ":" not in features[0] else features
    store = open_workspace(workspace).features
    with console.status("joining"):
        store.get_historical(
            pq.read_table(entities),
            refs,
            timestamp_field=timestamp_field,
            assume_utc=assume_utc,
            path=output,
        )
    rows = pq.ParquetFile(output).metadata.num_rows
    console.print(f"wrote {rows} rows to {output}")


def _when(text: str | None, what: str, assume_utc: bool) -> Any:
    from datetime import UTC, datetime

    from modelyard._time import parse_time

    if text is None:
        return datetime.now(UTC)
    return parse_time(text, what, assume_utc=assume_utc)


@app.command("materialize")
def materialize(
    start: str = typer.Option(None, "--start", help="time or day; default: each view's watermark"),
    end: str = typer.Option(None, "--end", help="ISO time or day; default: now"),
    views: list[str] = typer.Option(None, "--view", help="only these views (repeatable)"),
    assume_utc: bool = AssumeUtcOpt,
    workspace: str = WorkspaceOpt,
) -> None:
    """Copy the latest in-ttl feature values to the online store."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    store = open_workspace(workspace).features
    until = _when(end, "--end", assume_utc)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} rows"),
    )
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, Any] = {}

        def step(view: str, rows: int) -> None:
            if view not in tasks:
                tasks[view] = progress.add_task(f"materializing {view}", total=None)
            progress.advance(tasks[view], rows)

        if start is None:
            results = store.materialize_incremental(until, views=views or None, progress=step)
        else:
            results = store.materialize(
                _when(start, "--start", assume_utc), until, views=views or None, progress=step
            )
    table = Table(title="materialized")
    for col in ("view", "version", "rows", "from", "to"):
        table.add_column(col)
    for r in results:
        table.add_row(r.view, str(r.version), str(r.rows), r.start.isoformat(), r.end.isoformat())
    console.print(table)
    fresh = [r.view for r in results if r.first]
    if fresh:
        from modelyard._redact import redact

        console.print(
            f"the online store {redact(store.online.url)} had no watermark for "
            f"{', '.join(fresh)} (a new or emptied store, or a new version): wrote every row "
            "in range"
        )


@app.command("get-online")
def get_online(
    features: list[str] = typer.Option(
        ..., "--features", "-f", help="a service name, or view:feature (repeatable)"
    ),
    keys: str = typer.Option(
        ...,
        "--keys",
        "-k",
        help="JSON: one key object, a list of them, or key columns, e.g. "
        "'{\"driver_id\": 1}', '[{\"driver_id\": 1}]' or '{\"driver_id\": [1, 2]}'",
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Read features from the online store; prints JSON with values, times and status."""
    try:
        rows = json.loads(keys)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--keys is not valid JSON: {exc}") from None
    if not (isinstance(rows, dict) and rows) and not (
        isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)
    ):
        raise InvalidInputError(
            "--keys must be a JSON object of keys ('{\"driver_id\": 1}'), a list of objects "
            "('[{\"driver_id\": 1}]') or an object of key columns ('{\"driver_id\": [1, 2]}')"
        )
    refs: Any = features[0] if len(features) == 1 and ":" not in features[0] else features
    result = open_workspace(workspace).features.get_online(refs, rows)
    out = [
        {
            name: {
                "value": result.values[name][i],
                "event_time": None
                if result.event_times[name][i] is None
                else result.event_times[name][i].isoformat(),  # type: ignore[union-attr]
                "status": result.status[name][i],
            }
            for name in result.names
        }
        for i in range(len(result))
    ]
    console.print_json(json.dumps(out))


@app.command("push")
def push(
    view: str,
    rows: str = typer.Option(
        None,
        "--rows",
        "-r",
        help='JSON: one row object or a list, times as ISO text, e.g. \'[{"driver_id": 1, '
        '"event_timestamp": "2024-01-01T00:00:00Z", "rating": 4.5}]\'',
    ),
    file: Path = typer.Option(None, "--file", help="Parquet file of rows (instead of --rows)"),
    to: str = typer.Option("both", "--to", help="both, online or offline"),
    assume_utc: bool = AssumeUtcOpt,
    workspace: str = WorkspaceOpt,
) -> None:
    """Check rows against VIEW (schema and row-level checks), then write them offline and
    online; one bad row rejects the whole push and nothing is written."""
    if (rows is None) == (file is None):
        raise InvalidInputError("pass the rows to push with --rows JSON or --file PARQUET")
    if to not in ("both", "online", "offline"):
        raise InvalidInputError(f"--to {to!r}: use both, online or offline")
    store = open_workspace(workspace).features
    data: Any
    if file is not None:
        import pyarrow.parquet as pq

        if not file.is_file():
            raise InvalidInputError(f"rows file {str(file)!r} does not exist")
        data = pq.read_table(file)
    else:
        data = _json_rows(rows, store.view(view), assume_utc)
    count = store.push(view, data, to=cast(Literal["both", "online", "offline"], to))
    console.print(f"pushed {count} row{'s' if count != 1 else ''} to {view} ({to})")


def _json_rows(text: str, view: Any, assume_utc: bool) -> list[dict[str, Any]]:
    """``--rows`` as row dicts, with the view's time columns parsed from ISO text."""
    try:
        found = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--rows is not valid JSON: {exc}") from None
    found = [found] if isinstance(found, dict) else found
    if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
        raise InvalidInputError("--rows must be a JSON object or a list of objects")
    times = [c for c in (view.source.timestamp_field, view.source.created_timestamp_field) if c]
    for i, row in enumerate(found):
        for column in times:
            if isinstance(row.get(column), str):
                row[column] = _when(row[column], f"--rows row {i} '{column}'", assume_utc)
    return found


@app.command("backfill")
def backfill(
    view: str,
    start: str = typer.Option(..., "--start", help="ISO time with a zone, or a day"),
    end: str = typer.Option(..., "--end", help="ISO time with a zone, or a day"),
    partition_hours: float = typer.Option(24, "--partition-hours", help="partition size"),
    assume_utc: bool = AssumeUtcOpt,
    workspace: str = WorkspaceOpt,
) -> None:
    """Recompute VIEW from its source, partition by partition, checking each one."""
    from datetime import timedelta

    from rich.progress import Progress

    store = open_workspace(workspace).features
    with Progress(console=console) as progress:
        task = progress.add_task(f"backfilling {view}", total=None)

        def step(result: Any) -> None:
            progress.advance(task)

        report = store.backfill(
            view,
            _when(start, "--start", assume_utc),
            _when(end, "--end", assume_utc),
            partition=timedelta(hours=partition_hours),
            progress=step,
        )
    table = Table(title=f"backfill of {view} (version {report.version})")
    for col in ("partition start", "end", "rows", "status"):
        table.add_column(col)
    style = {"written": "green", "skipped": "dim", "rejected": "red"}
    for p in report.partitions:
        checks = ", ".join(f.check for f in p.failures)
        table.add_row(
            p.start.isoformat(),
            p.end.isoformat(),
            str(p.rows),
            f"{p.status} ({checks})" if checks else p.status,
            style=style[p.status],
        )
    console.print(table)
    if report.rejected:
        raise InvalidInputError(_rejections(report))


def _rejections(report: Any) -> str:
    """Every rejected partition with every check it failed and a sample row, in one line."""
    parts = []
    for p in report.rejected:
        failed = "; ".join(
            f"{f}" + (f" (e.g. {json.dumps(f.samples[0], default=str)})" if f.samples else "")
            for f in p.failures
        )
        parts.append(f"partition {p.start.isoformat()} rejected: {failed}")
    landed = sum(p.status == "written" for p in report.partitions)
    return (
        f"{len(report.rejected)} of {len(report.partitions)} partitions rejected, {landed} "
        f"written; {' | '.join(parts)}; nothing is read for a rejected partition until it "
        "passes: fix the source and run the same command to resume"
    )


# `features serve` lives in its own module (the server's options); registered here last.
from modelyard.cli.features_serve import serve as _serve  # noqa: E402

app.command("serve")(_serve)
