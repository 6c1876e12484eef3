"""``modelyard release canary NAME``: a stepped rollout with automatic rollback.

Exit codes: 0 promoted (or stopped with --stop), 1 rolled back on a breach, 2 bad
input or a failed release gate (nothing moved), 3 aborted from outside (--stop, or an
alias moved: traffic had moved and is back on the champion), 130 interrupted (traffic
is back on the champion).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from modelyard.cli._common import WorkspaceOpt, console, err_console, open_workspace
from modelyard.cli.release import GateOpt, HoldoutOpt, ReplayOpt, StepPrinter, TargetOpt
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.release import StepResult


def canary(
    name: str = typer.Argument(..., help="model name"),
    candidate: str = typer.Option(
        "staging", "--candidate", help="alias of the version to roll out"
    ),
    percent: float = typer.Option(None, "--percent", help="first step, % of requests (default 10)"),
    steps: str = typer.Option(
        None, "--steps", help="the steps after --percent, e.g. 50,100 (default 50,100)"
    ),
    interval: str = typer.Option(
        None, "--interval", help="time per step: 30s, 10m, 1h (default 10m)"
    ),
    to: str = typer.Option("production", "--to", help="alias to move once every step is healthy"),
    max_p99_ms: float = typer.Option(
        None, "--max-p99-ms", help="candidate latency p99 limit per step (default 1000)"
    ),
    max_error_rate: float = typer.Option(
        None, "--max-error-rate", help="candidate 5xx share limit per step (default 0.01)"
    ),
    max_drift_share: float = typer.Option(
        None, "--max-drift-share", help="share of input columns allowed to drift (default 0.5)"
    ),
    min_requests: int = typer.Option(
        None, "--min-requests", help="fewer candidate requests in a step roll back (default 20)"
    ),
    sinks: list[str] = typer.Option(
        None, "--sink", help="alert sink for a rollback (repeatable) (default log)"
    ),
    stop: bool = typer.Option(
        False, "--stop", help="stop NAME's running canary: all traffic back to the champion"
    ),
    gates: list[str] = GateOpt,
    holdout: Path = HoldoutOpt,
    target: str = TargetOpt,
    replay: int = ReplayOpt,
    force: bool = typer.Option(
        False, "--force", help="start even if a release gate fails (needs --reason)"
    ),
    reason: str = typer.Option(None, "--reason", help="why; kept in the release record"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Roll NAME@CANDIDATE out in steps; promote it, or roll back and alert.

    Every server of NAME follows each step within its poll interval. After
    each step the candidate's latency p99, error rate and input drift are
    judged from the prediction log. The first breach, or too little traffic
    to judge, puts all traffic back on the champion and alerts; after the
    last healthy step, --to points at the candidate. Limits not given here
    come from the release.canary table of modelyard.toml.

    Before any traffic moves, the release gates of modelyard.toml (and
    --gate) judge the candidate on its holdout set, as 'release promote'
    does: a failed gate refuses the canary (exit 2, nothing moved) unless
    --force --reason TEXT is given. A model with no gates skips this check.

    A running canary renews its hold on the traffic split every few seconds;
    if it dies, servers go back to the champion after 60 s and the next
    canary takes over. Exit codes: 0 promoted (or --stop), 1 rolled back on a
    breach, 2 bad input or a failed gate (nothing moved), 3 aborted from
    outside (--stop or an alias moved; traffic is back on the champion),
    130 interrupted.
    """
    from modelyard._time import parse_duration
    from modelyard.release import CanaryGates, canary_settings, run_canary, stop_canary

    ws = open_workspace(workspace)
    release = ws.config.tables.get("release", {})
    if stop:
        stopped = stop_canary(ws, name)
        shown = f"stopped the canary: {stopped}" if stopped else f"no canary of {name} is running"
        console.print(f"{escape(shown)}; all traffic goes to the champion")
        return
    with _Printer() as printer:
        try:
            result = run_canary(
                ws,
                name,
                candidate=candidate,
                to=to,
                steps=_steps(percent, steps, canary_settings(release, {}).steps),
                interval_s=None
                if interval is None
                else parse_duration(interval, "interval").total_seconds(),
                max_p99_ms=max_p99_ms,
                max_error_rate=max_error_rate,
                max_drift_share=max_drift_share,
                min_requests=min_requests,
                sinks=sinks or None,
                progress=printer,
                gates=CanaryGates(
                    gates=gates or (),
                    holdout=holdout,
                    target=target,
                    replay_rows=replay,
                    force=force,
                    reason=reason,
                ),
                # Plain lines: the step bar is a live display already.
                check_progress=StepPrinter(printer.console, spinner=False),
            )
        except KeyboardInterrupt:
            err_console.print(
                f"interrupted: all traffic is back on {escape(name)}@{escape(to)}; "
                "recorded as canary-aborted"
            )
            raise typer.Exit(130) from None
    if result.promoted:
        console.print(
            f"[green]promoted[/] {escape(name)}@{escape(to)}: "
            f"v{result.from_version} -> v{result.to_version}"
        )
        return
    if result.aborted:
        err_console.print(f"[bold yellow]aborted:[/] {escape(result.reason or '')}", soft_wrap=True)
        raise typer.Exit(3)
    sent = ", ".join(f"{k} {v}" for k, v in result.deliveries.items()) or "no sink"
    err_console.print(f"[bold red]rolled back:[/] {escape(result.reason or '')}", soft_wrap=True)
    err_console.print(f"alert: {escape(sent)}")
    raise typer.Exit(1)


def _steps(
    percent: float | None, rest: str | None, default: tuple[float, ...]
) -> list[float] | None:
    """``--percent`` then ``--steps``; ``--steps`` may repeat --percent as its first value.

    ``--percent`` alone keeps the default steps above it: 5 -> 5, 10, 50, 100.
    """
    later: list[float] = []
    if rest is not None:
        try:
            later = [float(p) for p in rest.split(",") if p.strip()]
        except ValueError:
            raise InvalidInputError(
                f"--steps {rest!r} is not a list of percents; write e.g. --steps 50,100"
            ) from None
    if percent is None:
        return later or None
    if rest is None:
        later = [p for p in default if p > percent]
    if later and later[0] == percent:
        return later
    return [percent, *later]


class _Printer(Progress):
    """Each step as it starts and as it is judged, with a bar while it runs."""

    def __init__(self) -> None:
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._label = ""
        self._interval = 0.0

    def started(self, step: int, of: int, percent: float, interval_s: float) -> None:
        self._label = f"step {step}/{of}: {percent:g}%"
        self.console.print(f"{self._label} of traffic to the candidate for {interval_s:g}s")
        if self._task is not None:
            self.remove_task(self._task)
        self._task = self.add_task(self._label, total=interval_s)
        self._interval = interval_s

    def waiting(self, remaining_s: float) -> None:
        if self._task is not None:
            self.update(self._task, completed=self._interval - remaining_s)

    def judged(self, result: StepResult) -> None:
        v = result.values
        parts = [
            f"{int(v.get('requests') or 0)} requests",
            f"p99 {_fmt(v.get('latency_p99_ms'), ' ms')}",
            f"errors {_fmt(v.get('error_rate'))}",
        ]
        if "drift_share" in v:
            parts.append(f"drift share {_fmt(v.get('drift_share'))}")
        state = "[green]ok[/]" if result.healthy else "[bold red]breach[/]"
        line = f"{self._label} {state}: {', '.join(parts)}"
        if result.breaches:
            line += " — " + escape("; ".join(str(b) for b in result.breaches))
        for note in result.notes:
            line += f" ({escape(note)})"
        self.console.print(line, soft_wrap=True)


def _fmt(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.4g}{unit}"
