"""Progress bars that still say something when the output is not a terminal.

rich draws its bars only on a terminal; piped into a file or a CI log, a ``Progress``
prints nothing until it stops, so a four-minute quickstart looked hung. ``progress()``
gives the usual bars on a terminal and, elsewhere, a ``Progress`` that prints each task
as a plain line when it starts, at most every ``EVERY_S`` seconds while it runs, and
when it ends.
"""

from __future__ import annotations

import time
from typing import Any

from rich.progress import Progress, ProgressColumn, TaskID

from modelyard.cli._common import console

EVERY_S = 10.0


def progress(*columns: str | ProgressColumn) -> Progress:
    """Bars with ``columns`` on a terminal; plain lines otherwise."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=False)
    return _Lines()


class _Lines(Progress):
    def __init__(self) -> None:
        super().__init__(console=console, disable=True)
        self._said: dict[TaskID, tuple[float, str]] = {}

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task = super().add_task(description, *args, **kwargs)
        self._say(task, force=True)
        return task

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._say(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._say(task_id)

    def _say(self, task_id: TaskID, *, force: bool = False) -> None:
        task = self._tasks[task_id]
        done = task.total is not None and task.completed >= task.total
        count = f" {task.completed:.0f}/{task.total:.0f}" if task.total else ""
        line = f"{task.description}{count}"
        when, said = self._said.get(task_id, (0.0, ""))
        now = time.monotonic()
        if line != said and (force or done or now - when >= EVERY_S):
            self._said[task_id] = (now, line)
            console.print(line, highlight=False, soft_wrap=True)
