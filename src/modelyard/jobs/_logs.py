"""A run's log while it runs: read it, follow it (``jobs logs -f``), echo it (``jobs run``).

Where the log is: the worker writes it line by line to ``RUN_ID.log`` in the workspace's
state folder (the file keeps everything); the runner copies its tail into the run's
history row every few seconds while it runs, and once more at the end. So on the
machine that runs the job the file is read (at once, complete); elsewhere (a scheduler
on another host, sharing the metadata database) the history row is, a few seconds late.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard import _time
from modelyard.errors import ConflictError
from modelyard.jobs._history import ABANDONED_AFTER_S, JobHistory, JobRun

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

LEASE_GRACE_S = ABANDONED_AFTER_S


def log_dir(ws: Workspace) -> Path:
    """Where the runners of ``ws`` write their runs' logs."""
    return ws.state_dir / "jobs" / "logs"


class LogTail:
    """What a growing file gained since the last ``read``, in whole lines.

    A line still being written stays back until its newline arrives, unless ``final``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self, *, final: bool = False) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        data = self._partial + data
        cut = len(data) if final else data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut].decode("utf-8", errors="replace")


def find_run(history: JobHistory, ref: str) -> JobRun:
    """The newest run of the job named ``ref``, else the run whose id starts with ``ref``."""
    newest = history.runs(ref, limit=1)
    return newest[0] if newest else history.run(ref)


def run_log(ws: Workspace, run: JobRun) -> str:
    """What ``run`` has written so far: its file while it runs here, else its history row."""
    path = log_dir(ws) / f"{run.run_id}.log"
    if run.status == "running" and path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    return run.log


def follow_log(
    ws: Workspace,
    history: JobHistory,
    run: JobRun,
    write: Callable[[str], None],
    *,
    poll_s: float = 0.25,
) -> JobRun:
    """Write ``run``'s log as it grows until the run ends; return the ended run.

    Raises ``ConflictError`` when the run's owner died without ending it (its slot lease
    lapsed), rather than waiting forever.
    """
    tail = LogTail(log_dir(ws) / f"{run.run_id}.log")
    shown = 0  # characters shown from the history row, while there is no file here
    while True:
        current = history.run(run.run_id)
        ended = current.status != "running"
        if tail.path.is_file():
            text = tail.read(final=ended)
            # The history row holds a copy of the file's start: skip what it showed.
            text, shown = text[shown:], max(0, shown - len(text))
        else:
            text = current.log[shown:] if len(current.log) >= shown else ""
            shown = max(shown, len(current.log))
        if text:
            write(text)
        if ended:
            return current
        _check_owner(history, current)
        time.sleep(poll_s)


def _check_owner(history: JobHistory, run: JobRun) -> None:
    slot = history.slot(run.job, run.logical_date)
    if slot is None or slot["run_id"] != run.run_id or slot["state"] != "running":
        return
    lapsed_s = (_time.now_us() - slot["lease_until"]) / 1e6
    if lapsed_s > LEASE_GRACE_S:
        raise ConflictError(
            f"run {run.run_id[:12]} of {run.job} is marked running, but its owner "
            f"{slot['owner']} stopped renewing its lease {lapsed_s:.0f} s ago (it died?); "
            "the next scheduler to take the slot records it as failed"
        )
