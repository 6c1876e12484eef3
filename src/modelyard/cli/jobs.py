"""``modelyard jobs list | run | backfill | runs | logs`` and ``modelyard scheduler``."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import typer
from rich.markup import escape
from rich.table import Table

from modelyard._time import parse_duration
from modelyard.cli._common import (
    AssumeUtcOpt,
    WorkspaceOpt,
    console,
    fmt_time,
    open_workspace,
)

app = typer.Typer(help="Scheduled jobs: list, run, backfill, runs, logs.", no_args_is_help=True)

_STATUS = {"success": "[green]success[/]", "failed": "[red]failed[/]", "timeout": "[red]timeout[/]"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _runs_table(runs: list[Any], title: str) -> Table:
    table = Table(title=title)
    for col in ("run", "job", "logical date", "trigger", "status", "attempts", "duration", "error"):
        table.add_column(col, overflow="fold")
    for r in runs:
        table.add_row(
            r.run_id[:12],
            r.job,
            fmt_time(r.logical_date),
            r.trigger,
            _STATUS.get(r.status, r.status),
            str(r.attempts),
            _duration(r.duration_s),
            escape(r.error or ""),
        )
    return table


@app.command("list")
def list_jobs(workspace: str = WorkspaceOpt) -> None:
    """Each job: schedule, next slot, last run, retries, timeout, SLA, executor."""
    from modelyard.jobs import JobHistory, workspace_jobs

    ws = open_workspace(workspace)
    jobs = workspace_jobs(ws)
    if not jobs:
        console.print("no jobs; declare \\[jobs.NAME] in modelyard.toml (see the README)")
        return
    history = JobHistory(ws.metadata)
    now = datetime.now(UTC)
    table = Table(title="jobs")
    columns = ("job", "schedule", "next due", "last run", "retries", "timeout", "sla", "executor")
    for col in (*columns, "reads → writes"):
        table.add_column(col, overflow="fold")
    for spec in jobs.values():
        last = history.runs(spec.name, limit=1)
        shown = f"{fmt_time(last[0].logical_date)} {last[0].status}" if last else ""
        table.add_row(
            spec.name,
            spec.schedule.cron if spec.schedule else "(manual)",
            fmt_time(spec.schedule.next_after(now)) if spec.schedule else "",
            shown,
            str(spec.retries),
            _duration(spec.timeout_s),
            _duration(spec.sla_s),
            (spec.executor or ws.executor.url)
            + (f" x{len(spec.partitions)}" if spec.partitions else ""),
            f"{', '.join(spec.inputs)} → {', '.join(spec.outputs)}"
            if spec.inputs or spec.outputs
            else "",
        )
    console.print(table)


@app.command("run")
def run(
    name: str = typer.Argument(..., help="job name"),
    date: str = typer.Option(
        None, "--date", help="logical date (default: the newest complete interval)"
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="do not show the run's log on stderr as it is written"
    ),
    retries: int = typer.Option(
        None, "--retries", min=0, help="attempts after the first (default: the job's own)"
    ),
    assume_utc: bool = AssumeUtcOpt,
    workspace: str = WorkspaceOpt,
) -> None:
    """Run a job once, now, for one logical date; exit 1 when it fails.

    What the job writes (prints, log records, progress lines) shows on stderr as it runs.
    """
    from modelyard.jobs import run_job

    ws = open_workspace(workspace)
    echo = None if quiet else _write_to(sys.stderr)
    result = run_job(ws, name, date=date, assume_utc=assume_utc, echo=echo, retries=retries)
    console.print(_runs_table([result], f"job {name}"))
    if result.status != "success":
        raise typer.Exit(1)


@app.command("backfill")
def backfill_command(
    name: str = typer.Argument(..., help="job name"),
    start: str = typer.Option(..., "--start", help="first logical date, e.g. 2026-11-01"),
    end: str = typer.Option(..., "--end", help="last logical date (inclusive)"),
    rerun: bool = typer.Option(False, "--rerun", help="run slots that already succeeded too"),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="do not show each run's log on stderr as it is written"
    ),
    assume_utc: bool = AssumeUtcOpt,
    workspace: str = WorkspaceOpt,
) -> None:
    """Run every slot between two logical dates, oldest first; exit 1 if any failed.

    What each run writes (prints, log records, progress lines) shows on stderr as it runs.
    """
    from modelyard.jobs import backfill

    ws = open_workspace(workspace)
    echo = None if quiet else _write_to(sys.stderr)

    def show(run: Any) -> None:
        console.print(f"{fmt_time(run.logical_date)}  {_STATUS.get(run.status, run.status)}")

    runs = backfill(
        ws,
        name,
        start=start,
        end=end,
        rerun=rerun,
        on_run=show,
        assume_utc=assume_utc,
        echo=echo,
    )
    failed = [r for r in runs if r.status != "success"]
    console.print(
        f"backfill of {name}: {len(runs)} slot(s) run, {len(failed)} failed"
        + ("" if runs else " (every slot had already succeeded; --rerun runs them again)")
    )
    if failed:
        raise typer.Exit(1)


@app.command("runs")
def runs_command(
    name: str = typer.Argument(None, help="job name (default: every job)"),
    limit: int = typer.Option(20, "--limit", min=1),
    workspace: str = WorkspaceOpt,
) -> None:
    """The newest runs: status, attempts, duration, error."""
    from modelyard.jobs import JobHistory

    ws = open_workspace(workspace)
    console.print(_runs_table(JobHistory(ws.metadata).runs(name, limit=limit), "job runs"))


@app.command("logs")
def logs(
    run_id: str = typer.Argument(
        ..., help="run id (a prefix will do), or a job name for its newest run"
    ),
    follow: bool = typer.Option(
        False,
        "--follow",
        "-f",
        help="keep printing as the run writes, until it ends; exit 0 if it succeeded, else 1",
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Print what a run wrote: its prints, log records, progress lines and tracebacks.

    A running run shows what it has written so far; ``-f`` follows it to its end.
    """
    from modelyard.jobs import JobHistory, find_run, follow_log, run_log

    ws = open_workspace(workspace)
    history = JobHistory(ws.metadata)
    run = find_run(history, run_id)
    if not follow:
        text = run_log(ws, run)
        if not text:
            still = " yet" if run.status == "running" else ""
            text = f"(run {run.run_id[:12]} wrote nothing{still})\n"
        sys.stdout.write(text)
        return
    try:
        ended = follow_log(ws, history, run, _write_to(sys.stdout))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None  # Ctrl-C: stop following; the run goes on
    if ended.status != "success":
        why = f": {ended.error}" if ended.error else ""
        sys.stderr.write(f"run {ended.run_id[:12]} of {ended.job} {ended.status}{why}\n")
        raise typer.Exit(1)


def _write_to(stream: TextIO) -> Callable[[str], None]:
    """A writer of text to ``stream`` that flushes, so a pipe or a file sees it at once."""

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


def scheduler(
    once: bool = typer.Option(
        False, "--once", help="run what is due now (in 'after' order), wait for it, exit"
    ),
    max_active: int = typer.Option(4, "--max-active", min=1, help="runs at the same time"),
    lease: str = typer.Option(
        "60s", "--lease", help="how long a slot stays ours without renewal (after a crash)"
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Run the workspace's jobs on their schedules until SIGTERM or Ctrl-C.

    Safe to restart (missed slots are caught up) and to run twice against one database
    (each slot runs once).
    """
    from modelyard.jobs import Scheduler, open_runner, run_due, workspace_jobs

    ws = open_workspace(workspace)
    jobs = workspace_jobs(ws)
    scheduled = [s.name for s in jobs.values() if s.schedule is not None]
    if not scheduled:
        console.print("no scheduled jobs; give a job schedule = '…' in modelyard.toml")
        return
    lease_s = parse_duration(lease, "--lease").total_seconds()
    with open_runner(ws, lease_s=lease_s) as runner:
        sched = Scheduler(jobs, runner, max_active=max_active)
        if once:
            runs = run_due(sched)
            sched.close()
            if runs:
                console.print(_runs_table(runs, "runs"))
            else:
                console.print("nothing due")
            if any(r.status != "success" for r in runs):
                raise typer.Exit(1)
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        console.print(
            f"scheduler {runner.owner}: {', '.join(scheduled)}; SIGTERM stops it after the "
            "runs in flight",
            soft_wrap=True,
        )
        sched.run_forever(stop)
