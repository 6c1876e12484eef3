"""``modelyard monitor …``: drift of served traffic (and of any file) against training data."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, open_workspace
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.monitoring import DriftReport
    from modelyard.registry import ModelVersion
    from modelyard.workspace import Workspace

app = typer.Typer(help="Drift, quality, SLOs and alerts of served models.")


@app.command("drift")
def drift_command(
    ref: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION"),
    window: str = typer.Option("1d", "--window", help="how far back: 30m, 1h, 1d, 2w"),
    current: Path = typer.Option(
        None, "--current", help="compare this Parquet file instead of logged traffic"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Per-column drift (PSI, KS, chi², Jensen–Shannon, null rate, unseen categories)."""
    from modelyard.monitoring import (
        SampleSize,
        comparable,
        drift,
        parse_window,
        reference_of,
    )

    ws = open_workspace(workspace)
    span = parse_window(window)
    min_rows = SampleSize.of(ws.config).min_rows
    if current is None:
        version, report = traffic_drift(ws, ref, span)
        source = f"traffic of the last {window}"
    else:
        version, reference = reference_of(ws.registry, ref)
        frame = read_parquet(current, "--current")
        columns = [c for c in reference.columns if c in frame.columns]
        if not columns:
            raise InvalidInputError(
                f"{current} has none of the model's input columns ({', '.join(reference.columns)})"
            )
        report = drift(comparable(reference, columns), frame[columns], min_rows=min_rows)
        source = str(current)
    if as_json:
        print(json.dumps({"model": version.ref, "source": source, **report.to_json_dict()}))
        return
    if report.status != "ok":
        console.print(f"drift of {version.ref}: {escape(source)}: {escape(report.note)}")
        return
    table = Table(title=f"drift of {version.ref}: {source} ({report.rows_current} rows)")
    headers = ("column", "kind", "PSI", "KS / JS", "p-value", "nulls Δ", "unseen", "drifted", "why")
    for name in headers:
        table.add_column(name)
    for name, col in report.columns.items():
        m = col.metrics
        second = m.get("ks") if col.kind == "numeric" else m.get("js")
        p_value = m.get("ks_p_value") if col.kind == "numeric" else m.get("chi2_p_value")
        table.add_row(
            escape(name),
            col.kind,
            _num(m.get("psi")),
            _num(second),
            _num(p_value),
            _num(m.get("null_rate_change")),
            _num(m.get("unseen_share")),
            "[bold red]yes[/]" if col.drifted else "no",
            escape(col.reason),
        )
    console.print(table)
    drifted = report.drifted_columns
    console.print(f"{len(drifted)} of {len(report.columns)} columns drifted: {', '.join(drifted)}")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def read_parquet(path: Path, option: str) -> pd.DataFrame:
    """``path`` as a DataFrame, or a one-line error when it is missing, not Parquet or
    empty."""
    import pandas as pd
    import pyarrow as pa

    if not path.exists():
        raise InvalidInputError(f"{option} {path} does not exist; pass a Parquet file")
    try:
        frame = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        # Arrow's messages run to several sentences; the first one says what was wrong.
        text = str(exc).strip() or type(exc).__name__
        reason = text.splitlines()[0].split(". ")[0].rstrip(".")[:160]
        raise InvalidInputError(
            f"{option} {path} is not a readable Parquet file ({reason}); "
            "pass one written with DataFrame.to_parquet"
        ) from None
    if frame.empty:
        raise InvalidInputError(f"{option} {path} has no rows; pass a file with the rows to judge")
    return frame


@app.command("quality")
def quality_command(
    ref: str = typer.Argument(..., help="NAME (every version), or NAME@ALIAS / NAME/VERSION"),
    window: str = typer.Option("7d", "--window", help="predictions made in the last 30m/1h/1d/…"),
    labels: Path = typer.Option(
        None, "--labels", help="Parquet with request_id, label (and row); else the feedback"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Quality once labels are in: accuracy, F1, ROC/PR AUC, calibration, or MAE/RMSE."""
    from datetime import UTC, datetime

    from modelyard.monitoring import SampleSize, joined, parse_window, quality, resolve_model

    ws = open_workspace(workspace)
    name, version = resolve_model(ws.registry, ref)
    given = None
    if labels is not None:
        given = read_parquet(labels, "--labels")
        if not {"request_id", "label"} <= set(given.columns):
            raise InvalidInputError(f"{labels} needs the columns request_id and label")
    since = datetime.now(UTC) - parse_window(window)
    frame = joined(ws.predictions, name, given, since=since, version=version)
    rows = quality(frame, min_labels=SampleSize.of(ws.config).min_labels)
    if as_json:
        print(json.dumps({"model": name, "window": window, "groups": rows}))
        return
    table = Table(title=f"quality of {name}, last {window}")
    names = sorted({k for r in rows for k in r} - {"version", "variant", "status", "note"})
    for name in ("version", "variant", *names, "note"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            str(r["version"]),
            escape(r["variant"]),
            *[_num(r.get(n)) for n in names],
            escape(r.get("note", "")),
        )
    console.print(table)


@app.command("report")
def report_command(
    ref: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the report"),
    window: str = typer.Option("1d", "--window", help="how far back: 30m, 1h, 1d, 2w"),
    current: Path = typer.Option(
        None, "--current", help="report on this Parquet file against the reference instead"
    ),
    fmt: str = typer.Option("html", "--format", help="html (one offline page) or json"),
    workspace: str = WorkspaceOpt,
) -> None:
    """One offline page: drift with histograms, quality per day, latency and volume per hour
    (or, with --current, a file's drift against the training data)."""
    from modelyard.monitoring import (
        SampleSize,
        build_file_report,
        build_report,
        parse_window,
        write_report,
    )

    if fmt not in ("html", "json"):
        raise InvalidInputError(f"--format {fmt!r} is not known; use html or json")
    ws = open_workspace(workspace)
    sample = SampleSize.of(ws.config)
    if current is not None:
        frame = read_parquet(current, "--current")
        data = build_file_report(ws.registry, ref, frame, str(current), sample=sample)
    else:
        data = build_report(ws.registry, ref, ws.predictions, parse_window(window), sample=sample)
        data = {**data, "window": window}
    write_report(data, output, "json" if fmt == "json" else "html")
    found = data["drift"]
    if found["status"] != "ok":
        console.print(f"wrote {output}: drift {escape(found['note'])}")
        return
    drifted = found["drifted_columns"]
    console.print(f"wrote {output}: {len(drifted)} of {len(found['columns'])} columns drifted")


@app.command("export")
def export_command(
    out: Path = typer.Option(Path("monitoring"), "-o", "--out", help="folder to write into"),
    p99_ms: float = typer.Option(500.0, "--p99-ms", min=0.001, help="latency SLO for the rule"),
    error_rate: float = typer.Option(0.01, "--error-rate", min=0, max=1, help="error SLO"),
    drift_share: float = typer.Option(
        0.5, "--drift-share", min=0, max=1, help="alert above this share of drifted columns"
    ),
    quality_drop: float = typer.Option(
        0.05, "--quality-drop", min=0, help="alert on a fall this far below the 7-day best"
    ),
    stale_hours: float = typer.Option(
        48.0, "--stale-hours", min=0.001, help="alert when no result is this old"
    ),
) -> None:
    """Write a Grafana dashboard and Prometheus alerting rules for the server's /metrics."""
    from modelyard.monitoring import export

    written = export(
        out,
        p99_seconds=p99_ms / 1000,
        error_rate=error_rate,
        drift_share=drift_share,
        quality_drop=quality_drop,
        stale_hours=stale_hours,
    )
    for path in written:
        console.print(f"wrote {path}")


@app.command("compact")
def compact_command(
    keep_days: int = typer.Option(
        None, "--keep-days", help="delete logged days older than this (default: keep all)"
    ),
    min_age: str = typer.Option(
        "1h", "--min-age", help="merge parts shipped at least this long ago: 30m, 1h, 1d"
    ),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Ship this host's unshipped predictions, merge small parts, apply retention."""
    from modelyard._redact import redact
    from modelyard._time import parse_duration

    age = parse_duration(min_age, "--min-age").total_seconds()
    ws = open_workspace(workspace)
    done = ws.predictions.maintain(keep_days=keep_days, min_age_s=age)
    store = redact(ws.predictions.store.url)
    if as_json:
        print(json.dumps({"store": store, **done.as_dict()}))
        return
    console.print(
        f"prediction log {escape(store)}: shipped {done.records_shipped} "
        f"records, merged {done.parts_merged} parts into {done.parts_written}, deleted "
        f"{done.parts_deleted} parts of {len(done.days_deleted)} old days"
    )


def traffic_drift(ws: Workspace, ref: str, span: timedelta) -> tuple[ModelVersion, DriftReport]:
    """Drift of ``ref``'s logged traffic over ``span``, recorded as a time series
    (``modelyard monitor history``): what ``monitor drift`` does without ``--current``."""
    from modelyard.monitoring import SampleSize, drift_values, record_metrics, window_drift

    min_rows = SampleSize.of(ws.config).min_rows
    version, report = window_drift(ws.registry, ref, ws.predictions, span, min_rows=min_rows)
    values = drift_values(report)
    record_metrics(ws.metadata, version.name, values, window=span, version=version.version)
    return version, report
