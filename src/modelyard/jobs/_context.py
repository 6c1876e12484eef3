"""What a job function receives, and the call wrapper every executor runs it through.

The context carries plain values only (names, dates, a folder), so it pickles to a
worker process or a Ray task; the workspace is opened where the function runs.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard._progress import Progress
from modelyard.errors import ConfigError, InvalidInputError, ModelyardError

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class JobContext:
    """A run of a job for one logical date (and, when the job fans out, one partition)."""

    job: str
    run_id: str
    logical_date: datetime
    interval_end: datetime
    attempt: int
    root: str
    partition: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    _workspace: Workspace | None = field(default=None, repr=False, compare=False)

    @property
    def interval_start(self) -> datetime:
        """The start of the data interval: the logical date."""
        return self.logical_date

    @property
    def workspace(self) -> Workspace:
        """The job's workspace, opened on first use where the function runs."""
        if self._workspace is None:
            from modelyard.workspace import Workspace

            self._workspace = Workspace(self.root)
        return self._workspace

    @property
    def log(self) -> logging.Logger:
        """A logger whose lines land in the run's log (``modelyard jobs logs RUN_ID``)."""
        return logging.getLogger(f"modelyard.jobs.{self.job}")

    def progress(
        self, total: int | None = None, *, unit: str = "step", desc: str = "", every_s: float = 1.0
    ) -> Progress:
        """Progress lines in the run's log, at most one per ``every_s`` plus the last:
        ``epoch 1/3 step 120/800 (15%) 3.2 step/s ETA 3m31s``.

        ``with ctx.progress(len(batches), desc="epoch 1/3") as bar: ... bar.advance()``;
        ``jobs run`` shows them as they come, ``jobs logs -f`` follows them.
        """
        return Progress(total, unit=unit, desc=desc, write=self.log.info, every_s=every_s)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_workspace": None}


@dataclass(frozen=True)
class Outcome:
    """How one call ended: ``ok``, ``error`` (with the traceback) or ``timeout``.

    ``retry`` is False for an error that another attempt would meet again: the job
    refused its input or its settings (``InvalidInputError``, ``ConfigError``)."""

    status: str
    partition: str | None
    detail: str = ""
    retry: bool = True


@dataclass(frozen=True)
class Task:
    """One call of a job function: what an executor's worker receives."""

    function: str
    context: JobContext
    log_path: str | None


def run_task(task: Task) -> Outcome:
    return call(task.function, task.context, task.log_path)


def call(function: str, ctx: JobContext, log_path: str | None) -> Outcome:
    """Run ``function(ctx)`` with its prints and log records going to ``log_path``."""
    from modelyard.jobs._spec import resolve

    sink: Any = contextlib.nullcontext(None)
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        sink = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below
    with sink as out:
        handler = logging.StreamHandler(out) if out is not None else None
        root = logging.getLogger()
        if handler is not None:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            root.addHandler(handler)
            previous = root.level
            root.setLevel(min(previous, logging.INFO) if previous else logging.INFO)
        label = f" partition {ctx.partition}" if ctx.partition is not None else ""
        if out is not None:
            out.write(f"--- attempt {ctx.attempt}{label} of {ctx.job} ---\n")
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                fn = resolve(function, Path(ctx.root))
                result = fn(ctx)
            if out is not None and result is not None:
                out.write(f"returned: {result!r}\n")
            return Outcome("ok", ctx.partition)
        except ModelyardError as exc:  # says what is wrong in one line: no traceback
            line = f"{type(exc).__name__}: {exc.message}"
            if out is not None:
                out.write(line + "\n")
            refused = isinstance(exc, InvalidInputError | ConfigError)  # would be again
            return Outcome("error", ctx.partition, line, retry=not refused)
        except (Exception, SystemExit):  # the function's failure is the outcome, never ours
            text = traceback.format_exc()
            if out is not None:
                out.write(text)
            return Outcome("error", ctx.partition, _last_line(text))
        finally:
            if handler is not None:
                root.removeHandler(handler)
                root.setLevel(previous)
            if ctx._workspace is not None:
                ctx._workspace.close()
                ctx._workspace = None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"
