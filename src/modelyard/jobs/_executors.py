"""Where a job's calls run: the executor seam (``modelyard.backends.executors``).

Every executor runs the same wrapper (``_context.run_task``) on the same picklable
context, so a job function cannot tell them apart. A job's ``executor`` option names
its own executor; without one, the workspace's ``executor.url`` setting decides.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from modelyard.backends.executors import Executor, open_executor
from modelyard.jobs._context import Outcome, Task, run_task


class Executors:
    """The executors a runner's jobs name, each made on first use and closed together."""

    def __init__(self, default: str = "local") -> None:
        self.default = default
        self._made: dict[str, Executor] = {}
        self._lock = threading.Lock()

    def url(self, named: str | None) -> str:
        """The executor a job runs on: the one it names, else the workspace's."""
        return named or self.default

    def get(self, named: str | None) -> Executor:
        url = self.url(named)
        with self._lock:
            if url not in self._made:
                self._made[url] = open_executor(url)
            return self._made[url]

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, {}
        for executor in made.values():
            executor.close()


def run_tasks(executor: Executor, tasks: Sequence[Task], timeout_s: float | None) -> list[Outcome]:
    """Every task's outcome, in order; those unfinished after ``timeout_s`` end as ``timeout``."""
    names = [t.context.partition or t.context.job for t in tasks]
    results = executor.map(run_task, tasks, names=names, timeout_s=timeout_s)
    outcomes = []
    try:
        for task, settled in zip(tasks, results, strict=True):
            error = settled.error
            if error is None:
                outcomes.append(settled.get())
            elif error.timed_out:
                outcomes.append(Outcome("timeout", task.context.partition, "timed out"))
            else:  # the job's own failures are outcomes; this is the worker's or Ray's
                outcomes.append(Outcome("error", task.context.partition, error.reason))
    finally:
        results.close()
    return outcomes
