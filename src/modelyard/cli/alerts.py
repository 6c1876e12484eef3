"""``modelyard monitor check | alerts | slo | history``: rules, their history, SLOs, series."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, fmt_time, fmt_value, open_workspace

_STATE_STYLE = {
    "firing": "[bold red]firing[/]",
    # Firing, but a sink did not take the notice: the next check sends it again.
    "undelivered": "[bold red]firing, notice undelivered[/] (sent again on the next check)",
    "pending": "[yellow]pending[/]",
    "ok": "ok",
    # Resolved, but a sink did not take the resolved notice: the next check sends it again.
    "ok_undelivered": "ok, [red]resolved notice undelivered[/] (sent again on the next check)",
}


def check_command(
    rules: list[str] = typer.Option(None, "--rule", help="check only this rule (repeatable)"),
    fail_on_firing: bool = typer.Option(
        False, "--fail-on-firing", help="exit 1 when a rule is firing (for CI and schedulers)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Evaluate the alert rules of modelyard.toml once; notify what started firing or resolved."""
    from modelyard.monitoring import Checker, SampleSize

    ws = open_workspace(workspace)
    alerting = ws.alerting
    if not alerting.rules:
        console.print("no alert rules in modelyard.toml; add [[alerts.rules]] (see the README)")
        return
    checker = Checker(
        ws.metadata, ws.registry, ws.predictions, ws.features, sample=SampleSize.of(ws.config)
    )
    results = checker.run(alerting, rules or None)
    if as_json:
        rows = [
            {
                "rule": r.rule.name,
                "subject": r.rule.subject,
                "metric": r.rule.metric,
                "value": r.value,
                "condition": r.rule.condition,
                "state": r.state,
                "notified": r.notified,
                "deliveries": r.deliveries,
                "error": r.error,
                "note": r.note,
            }
            for r in results
        ]
        print(json.dumps({"checked_at": checker.now.isoformat(), "rules": rows}))
    else:
        table = Table(title=f"alert rules at {fmt_time(checker.now)} UTC")
        for name in ("rule", "subject", "metric", "value", "condition", "state", "notified"):
            table.add_column(name, overflow="fold")
        for r in results:
            shown = "no data" if r.value is None else fmt_value(r.value)
            if r.note:
                shown = escape(r.note.split(";")[0])  # "not enough data: 1 row, fewer than …"
            state = f"[red]error: {escape(r.error)}[/]" if r.error else _STATE_STYLE[r.state]
            sent = ", ".join(f"{k} {v}" for k, v in r.deliveries.items())
            notified = f"{r.notified} ({escape(sent)})" if r.notified else ""
            table.add_row(
                r.rule.name, r.rule.subject, r.rule.metric, shown, r.rule.condition, state, notified
            )
        console.print(table)
    if any(r.error for r in results) or (
        fail_on_firing and any(r.state in ("firing", "undelivered") for r in results)
    ):
        raise typer.Exit(1)


def alerts_command(
    rule: str = typer.Option(None, "--rule", help="only this rule's history"),
    limit: int = typer.Option(50, "--limit", min=1, help="how many notifications to list"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """The state of each rule, then the notifications sent, newest first."""
    from modelyard.monitoring import alert_history, alert_states

    ws = open_workspace(workspace)
    declared = ws.alerting
    if rule is not None:
        declared.rule(rule)  # a one-line error for a typo
    states = alert_states(ws.metadata)
    history = alert_history(ws.metadata, rule=rule, limit=limit)
    if as_json:
        now = [
            {
                "rule": r.name,
                "state": states.get(r.name, {}).get("state", "unchecked"),
                "since": _iso(states.get(r.name, {}).get("since")),
                "value": states.get(r.name, {}).get("value"),
            }
            for r in declared.rules
            if rule is None or r.name == rule
        ]
        events = [{**e, "at": _iso(e["at"])} for e in history]
        print(json.dumps({"rules": now, "history": events}, default=str))
        return
    current = Table(title="alert rules now")
    for name in ("rule", "severity", "state", "since", "last value"):
        current.add_column(name)
    for r in declared.rules:
        if rule is not None and r.name != rule:
            continue
        found = states.get(r.name)
        state = _STATE_STYLE[found["state"]] if found else "unchecked"
        since = fmt_time(found["since"]) if found and found["state"] != "ok" else ""
        current.add_row(r.name, r.severity, state, since, fmt_value(found and found["value"]))
    console.print(current)
    past = Table(title=f"alert history (newest {limit})")
    for name in ("at", "rule", "state", "severity", "value", "deliveries", "message"):
        past.add_column(name, overflow="fold")
    for e in history:
        sent = ", ".join(f"{k}: {v}" for k, v in e["deliveries"].items())
        past.add_row(
            fmt_time(e["at"]),
            e["rule"],
            e["state"],
            e["severity"],
            fmt_value(e["value"]),
            escape(sent),
            escape(e["message"]),
        )
    console.print(past if history else "no alerts sent yet")


def slo_command(
    ref: str = typer.Argument(..., help="NAME (every version), NAME@ALIAS or NAME/VERSION"),
    window: str = typer.Option("1h", "--window", help="how far back: 30m, 1h, 1d, 2w"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Requests, volume, error rates and latency percentiles of logged traffic."""
    from modelyard.monitoring import SLO_METRICS, parse_window, resolve_model, slo_values

    ws = open_workspace(workspace)
    name, version = resolve_model(ws.registry, ref)
    now = datetime.now(UTC)
    values = slo_values(ws.predictions, name, now - parse_window(window), now, version=version)
    if as_json:
        print(json.dumps({"model": ref, "window": window, **values}))
        return
    table = Table(title=f"SLOs of {ref}, last {window}")
    for column in ("indicator", "value", "meaning"):
        table.add_column(column)
    for key, value in values.items():
        table.add_row(key, "no data" if value is None else fmt_value(value), SLO_METRICS[key])
    console.print(table)


def history_command(
    subject: str = typer.Argument(..., help="model NAME, or view:NAME for feature freshness"),
    metric: str = typer.Option(
        "drift.share", "--metric", help="metric name; end with * for a prefix (drift.psi.*)"
    ),
    since: str = typer.Option("7d", "--since", help="how far back: 1h, 1d, 2w"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Recorded monitoring values over time (from monitor drift and monitor check)."""
    from modelyard.monitoring import metric_history, parse_window

    ws = open_workspace(workspace)
    start = datetime.now(UTC) - parse_window(since)
    rows = metric_history(ws.metadata, subject, metric=metric, since=start)
    if as_json:
        print(json.dumps([{**r, "at": _iso(r["at"])} for r in rows]))
        return
    if not rows:
        console.print(
            f"no values of {metric} for {subject} in the last {since}; "
            "run `modelyard monitor check` or `modelyard monitor drift` to record some"
        )
        return
    table = Table(title=f"{metric} of {subject}, last {since}")
    for column in ("at", "metric", "version", "variant", "value", "window"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            fmt_time(r["at"]),
            r["metric"],
            fmt_value(r["version"]),
            fmt_value(r["variant"]),
            "no data" if r["value"] is None else fmt_value(r["value"]),
            f"{r['window_s']} s",
        )
    console.print(table)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
