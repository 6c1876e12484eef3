"""``modelyard release …``: gates, promotion, canary rollout, rollback, and their record."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelyard.cli._common import (
    WorkspaceOpt,
    console,
    err_console,
    fmt_time,
    fmt_value,
    open_workspace,
)

if TYPE_CHECKING:
    from modelyard.release import GateReport

app = typer.Typer(
    help="Release models: gate a candidate, promote, canary, roll back.", no_args_is_help=True
)


@app.command("history")
def history(
    name: str = typer.Argument(None, help="model name (default: every model)"),
    limit: int = typer.Option(50, "--limit", min=1, help="newest actions to show"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Every release action: who, when, from/to, whether its gates passed, and the ones
    that failed, with their values (``release check`` shows the whole report)."""
    from modelyard.release import release_history

    ws = open_workspace(workspace)
    table = Table(title="release history")
    columns = ("when", "model", "action", "actor", "alias", "from", "to", "passed", "reason")
    for col in (*columns, "failed gates"):
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
            escape("; ".join(f"{g.gate} ({g.how()})" for g in r.failed_gates)),
        )
    console.print(table)


GateOpt = typer.Option(
    None,
    "--gate",
    help="extra condition, e.g. 'roc_auc >= champion.roc_auc - 0.005' (repeatable); "
    "added to the gates modelyard.toml declares",
)
HoldoutOpt = typer.Option(
    None,
    "--holdout",
    help="labelled rows (CSV or Parquet); default: the holdout set of the candidate's run",
)
TargetOpt = typer.Option(None, "--target", help="label column of the holdout set")
ReplayOpt = typer.Option(
    200,
    "--replay",
    min=0,
    help="holdout rows replayed for latency (0: none): serially, in this process, one "
    "row per call through validation and the model; no server, no batcher",
)
JsonOpt = typer.Option(False, "--json", help="print the result as JSON")

_OUTCOME = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}


class StepPrinter:
    """Each step of a release check on stderr, so that stdout (``--json``) stays clean.

    On a terminal a spinner shows the running step; elsewhere (CI logs, a pipe) a plain
    line announces it. Either way a line says when it is done and how long it took.
    """

    def __init__(self, out: Console = err_console, *, spinner: bool | None = None) -> None:
        self.out = out
        self.spinner = spinner  # None: on a terminal; False inside another live display

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        start = time.perf_counter()
        if self.out.is_terminal if self.spinner is None else self.spinner:
            with self.out.status(escape(f"{text} ...")):
                yield
        else:
            self.out.print(escape(f"{text} ..."), soft_wrap=True, highlight=False)
            yield
        took = time.perf_counter() - start
        self.out.print(escape(f"{text} ... done in {took:.1f} s"), soft_wrap=True, highlight=False)


def _version(number: int | None) -> str:
    return "not set" if number is None else f"version {number}"


def _shown(value: float | None, applies: bool) -> str:
    """A metric's cell: "n/a" where the check has no value for it (undefined here)."""
    return "n/a" if value is None and applies else fmt_value(value)


def _print_report(report: GateReport) -> None:
    table = Table(
        title=(
            f"release gates of {report.model}: {report.candidate} "
            f"({_version(report.candidate_version)}) vs {report.champion} "
            f"({_version(report.champion_version)})"
        ),
        caption=f"{report.kind} on {escape(report.holdout)}: {report.rows} rows, "
        f"target '{escape(report.target)}'",
    )
    for col in ("gate", "candidate", "champion", "threshold", "result", "note"):
        table.add_column(col, overflow="fold")
    for i, r in enumerate(report.results):
        judged = i > 0 and r.outcome != "skip"  # row 0 is the data contract: no metric
        table.add_row(
            escape(r.gate),
            _shown(r.candidate, judged),
            _shown(r.champion, judged and report.champion_version is not None),
            _shown(r.threshold, judged and r.outcome == "fail"),
            _OUTCOME[r.outcome],
            escape(r.note),
        )
    console.print(table)
    if len(report.results) == 1:
        console.print(
            f"no gates declared for {report.model}: add [release.{report.model}] "
            'gates = ["…"] to modelyard.toml or pass --gate'
        )


def _verdict(report: GateReport) -> str:
    failed = report.failures
    if not failed:
        return "[green]gates passed[/]"
    names = ", ".join(escape(r.gate) for r in failed)
    return f"[bold red]{len(failed)} of {len(report.results)} gates failed:[/] {names}"


@app.command("check")
def check(
    name: str = typer.Argument(..., help="model name"),
    candidate: str = typer.Option("staging", "--candidate", help="alias of the candidate"),
    champion: str = typer.Option("production", "--champion", help="alias of the champion"),
    gates: list[str] = GateOpt,
    holdout: Path = HoldoutOpt,
    target: str = TargetOpt,
    replay: int = ReplayOpt,
    as_json: bool = JsonOpt,
    workspace: str = WorkspaceOpt,
) -> None:
    """Evaluate the candidate against the champion on a holdout set; exit 1 if a gate fails.

    A gate whose metric is undefined on this holdout (ROC AUC with one class) fails,
    shown as n/a; a gate naming a metric the model cannot have is exit 2 before any
    model loads. The latency replay (--replay) is serial and in process: one row per
    call, no server, no batcher; it compares the models' own cost per request.
    """
    from modelyard.release import check_release

    ws = open_workspace(workspace)
    report = check_release(
        ws,
        name,
        candidate=candidate,
        champion=champion,
        gates=gates or (),
        holdout=holdout,
        target=target,
        replay_rows=replay,
        progress=StepPrinter(),
    )
    if as_json:
        print(json.dumps(report.to_json_dict()))
    else:
        _print_report(report)
        console.print(_verdict(report))
    if not report.passed:
        raise typer.Exit(1)


@app.command("promote")
def promote_command(
    name: str = typer.Argument(..., help="model name"),
    candidate: str = typer.Option("staging", "--candidate", help="alias of the candidate"),
    to: str = typer.Option("production", "--to", help="alias to move to the candidate"),
    gates: list[str] = GateOpt,
    holdout: Path = HoldoutOpt,
    target: str = TargetOpt,
    replay: int = ReplayOpt,
    force: bool = typer.Option(False, "--force", help="move even if a gate fails (needs --reason)"),
    reason: str = typer.Option(None, "--reason", help="why; kept in the release record"),
    as_json: bool = JsonOpt,
    workspace: str = WorkspaceOpt,
) -> None:
    """Move an alias to the candidate only if its gates pass (or with --force and --reason)."""
    from modelyard.release import promote

    ws = open_workspace(workspace)
    result = promote(
        ws,
        name,
        candidate=candidate,
        to=to,
        gates=gates or (),
        holdout=holdout,
        target=target,
        force=force,
        reason=reason,
        replay_rows=replay,
        progress=StepPrinter(),
    )
    report = result.report
    if as_json:
        print(
            json.dumps(
                {
                    "action": result.action,
                    "moved": result.moved,
                    "alias": result.alias,
                    "from_version": result.from_version,
                    "to_version": result.to_version,
                    "report": None if report is None else report.to_json_dict(),
                }
            )
        )
    elif report is None:
        console.print(
            f"{name}@{to} already points at version {result.to_version}; nothing to promote"
        )
    else:
        _print_report(report)
        console.print(_verdict(report))
        moved = f"{_version(result.from_version)} -> version {result.to_version}"
        if result.forced:
            console.print(f"[yellow]forced:[/] {name}@{to} moved {moved} ({escape(reason)})")
        elif result.moved:
            console.print(f"promoted {name}@{to}: {moved}")
        else:
            console.print(
                f"[bold red]blocked:[/] {name}@{to} stays at {_version(result.from_version)}; "
                "fix the candidate, or pass --force --reason TEXT"
            )
    if not result.moved and report is not None:
        raise typer.Exit(1)


@app.command("rollback")
def rollback_command(
    name: str = typer.Argument(..., help="model name"),
    alias: str = typer.Option("production", "--alias", help="alias to move back"),
    reason: str = typer.Option(None, "--reason", help="why; kept in the release record"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Move an alias back to the version it pointed at before its last move."""
    from modelyard.release import rollback

    ws = open_workspace(workspace)
    before = ws.registry.get(f"{name}@{alias}").version
    back = rollback(ws, name, alias=alias, reason=reason)
    console.print(f"rolled back {name}@{alias}: version {before} -> version {back.version}")
