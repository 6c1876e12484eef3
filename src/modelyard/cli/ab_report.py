"""``modelyard release ab-report NAME``: the A/B test's variants side by side, the accuracy
difference with its confidence interval, and what to do next."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, open_workspace

_ADVICE = {
    "promote": "promote the candidate: modelyard models alias {name} production {version}",
    "keep_champion": "keep the champion: take the ab table out of the serve spec to end the test",
    "keep_collecting": "keep the test running and the labels coming (POST /v1/feedback)",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ab_report_command(
    name: str = typer.Argument(..., help="model name"),
    since: str = typer.Option(
        "7d", "--since", help="window: predictions of the last 30m, 24h, 7d …"
    ),
    champion: str = typer.Option("production", "--champion", help="the champion's variant (alias)"),
    candidate: str = typer.Option(
        None, "--candidate", help="the candidate's variant (default: the other one served)"
    ),
    confidence: float = typer.Option(0.95, "--confidence", help="of the intervals, e.g. 0.9"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Compare the two variants of NAME's A/B test on labelled predictions."""
    from modelyard.monitoring import parse_window
    from modelyard.release import ab_report

    window = parse_window(since)
    ws = open_workspace(workspace)
    ws.registry.get(name)  # an unknown model: the registry's one line, with the models it has
    report = ab_report(
        ws.predictions,
        name,
        since=datetime.now(UTC) - window,
        champion=champion,
        candidate=candidate,
        confidence=confidence,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    level = f"{confidence:.0%}"
    table = Table(title=f"A/B test of {name}, last {since}")
    table.add_column("variant", no_wrap=True)
    for column in ("v", "requests", "labels", f"accuracy % ({level} CI)", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in (report.champion, report.candidate):
        if row is None:
            continue
        accuracy = _pct(row.accuracy)
        if row.accuracy_low is not None and row.accuracy_high is not None:
            accuracy += f" ({row.accuracy_low * 100:.1f}-{row.accuracy_high * 100:.1f})"
        table.add_row(
            row.variant,
            ", ".join(map(str, row.versions)),
            str(row.requests),
            str(row.labelled),
            accuracy,
            _ms(row.p50_ms),
            _ms(row.p99_ms),
        )
    console.print(table)
    if report.difference is not None:
        console.print(
            f"difference (candidate - champion): {report.difference * 100:+.1f} points, "
            f"{level} interval {report.difference_low * 100:+.1f} to "  # type: ignore[operator]
            f"{report.difference_high * 100:+.1f}"  # type: ignore[operator]
        )
    console.print(f"[bold]{report.verdict.replace('_', ' ')}[/]: {report.reason}")
    version = (
        report.candidate.versions[-1] if report.candidate and report.candidate.versions else ""
    )
    console.print(_ADVICE[report.verdict].format(name=name, version=version), highlight=False)
