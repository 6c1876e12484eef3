"""Run one slot of a job: attempts with exponential backoff, a timeout, a lease kept
alive while it runs, history written, and an alert when it finally fails.

Retries repeat only the partitions that failed: a fan-out over 50 partitions with one
flaky partition costs one call per retry, not fifty.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelyard.errors import ConflictError
from modelyard.jobs._context import JobContext, Outcome, Task
from modelyard.jobs._executors import Executors, run_tasks
from modelyard.jobs._history import JobHistory, JobRun
from modelyard.jobs._logs import LogTail
from modelyard.jobs._spec import JobSpec
from modelyard.monitoring import Alert, Alerting, deliver

MAX_LOG_CHARS = 1_000_000  # the history keeps the tail; the file keeps everything
_logger = logging.getLogger(__name__)
ECHO_EVERY_S = 0.2  # how soon a line the job writes reaches ``echo`` (``jobs run``'s stderr)


@dataclass
class Runner:
    """Runs claimed slots. ``sleep`` is injectable so tests need not wait out backoffs."""

    root: Path
    log_dir: Path
    history: JobHistory
    executors: Executors
    alerting: Alerting
    owner: str
    lease_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    echo: Callable[[str], None] | None = None
    """Gets the run's log as it is written (whole lines), e.g. to show it on stderr."""
    log_sync_s: float = 2.0
    """How often a running run's log is copied to its history row (for other machines)."""

    def log_path(self, run_id: str) -> Path:
        return self.log_dir / f"{run_id}.log"

    def execute(self, spec: JobSpec, logical: datetime, *, trigger: str) -> JobRun:
        """Run the slot ``owner`` has already claimed; returns the recorded run."""
        if not self.history.renew(spec.name, logical, self.owner, self.lease_s):
            raise ConflictError(
                f"job {spec.name}: slot {logical:%Y-%m-%dT%H:%M:%S} is not held by {self.owner} "
                "(its lease lapsed and another scheduler took it); nothing was run"
            )
        run_id = uuid.uuid4().hex
        end = spec.schedule.interval(logical)[1] if spec.schedule is not None else logical
        self.history.start_run(run_id, spec.name, logical, trigger, self.owner)
        stop = threading.Event()
        keeper = threading.Thread(
            target=self._keep_lease, args=(spec.name, logical, stop), daemon=True
        )
        keeper.start()
        watcher = threading.Thread(target=self._watch_log, args=(run_id, stop), daemon=True)
        watcher.start()
        status, error, interrupted, refused = "failed", None, False, False
        try:
            status, error, refused = self._attempts(spec, logical, end, run_id)
        except KeyboardInterrupt:  # the operator stopped it: no alert, and the slot is due again
            status, error, interrupted = "failed", "interrupted (Ctrl-C) before it ended", True
            raise
        except Exception as exc:  # ours, not the job's: still recorded, never a stuck slot
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            stop.set()
            keeper.join()
            watcher.join()
            log = self._read_log(run_id)
            self.history.end_run(run_id, status, error, log)  # type: ignore[arg-type]
            # A manual run that was interrupted, or whose input was refused (a date the
            # job does not serve), did nothing: its slot is handed back, so that a later
            # date given by mistake does not become where the scheduler goes on from.
            handed_back = interrupted or (refused and trigger == "manual")
            if handed_back:
                self.history.give_up(spec.name, logical, self.owner)
            else:
                self.history.release(
                    spec.name, logical, self.owner, "success" if status == "success" else "failed"
                )
            if status != "success" and not handed_back:  # the person at the prompt knows
                self._alert(spec, logical, run_id, status, error)
        return self.history.run(run_id)

    def _attempts(
        self, spec: JobSpec, logical: datetime, end: datetime, run_id: str
    ) -> tuple[str, str | None, bool]:
        """(status, error, whether the job refused its input or settings)."""
        pending: list[str | None] = list(spec.partitions) or [None]
        failures: list[Outcome] = []
        for attempt in range(1, spec.retries + 2):
            self.history.attempt(run_id, attempt)
            tasks = [
                Task(
                    spec.function,
                    JobContext(
                        job=spec.name,
                        run_id=run_id,
                        logical_date=logical,
                        interval_end=end,
                        attempt=attempt,
                        root=str(self.root),
                        partition=p,
                        params=dict(spec.params),
                    ),
                    str(self.log_path(run_id)),
                )
                for p in pending
            ]
            outcomes = run_tasks(self.executors.get(spec.executor), tasks, spec.timeout_s)
            failures = [o for o in outcomes if o.status != "ok"]
            if not failures:
                return "success", None, False
            pending = [o.partition for o in failures]
            if not any(o.retry for o in failures):
                first = failures[0]
                where = f"partition {first.partition}: " if first.partition is not None else ""
                return "failed", f"{where}{first.detail}", True  # refused: again if retried
            if attempt <= spec.retries:
                self.sleep(spec.retry_delay(attempt))
        first = failures[0]
        where = f"partition {first.partition}: " if first.partition is not None else ""
        if all(o.status == "timeout" for o in failures):
            limit = f"{spec.timeout_s:g} s" if spec.timeout_s is not None else "its limit"
            return "timeout", f"{where}timed out after {limit}", False
        return "failed", f"{where}{first.detail}", False

    def _keep_lease(self, job: str, logical: datetime, stop: threading.Event) -> None:
        while not stop.wait(self.lease_s / 3):
            self.history.renew(job, logical, self.owner, self.lease_s)

    def _watch_log(self, run_id: str, stop: threading.Event) -> None:
        """Echo the log as it grows, and copy it to history every ``log_sync_s``."""
        tail = LogTail(self.log_path(run_id))
        echo = self.echo
        synced_at, synced_size = time.monotonic(), 0
        while True:
            ended = stop.wait(ECHO_EVERY_S if echo is not None else self.log_sync_s)
            if echo is not None:
                text = tail.read(final=ended)
                try:
                    if text:
                        echo(text)
                except OSError:  # the reader went away (a closed pipe): the run goes on
                    echo = None
            if ended:
                return  # the run's end writes the whole log to history
            if time.monotonic() - synced_at >= self.log_sync_s:
                synced_at = time.monotonic()
                size = self._log_size(run_id)
                if size == synced_size:
                    continue
                try:
                    self.history.save_log(run_id, self._read_log(run_id))
                    synced_size = size
                except Exception as exc:  # a copy for readers elsewhere; the end writes it again
                    _logger.warning(
                        "job run %s: could not copy its log to history: %s", run_id, exc
                    )

    def _log_size(self, run_id: str) -> int:
        try:
            return self.log_path(run_id).stat().st_size
        except FileNotFoundError:
            return 0

    def _read_log(self, run_id: str) -> str:
        path = self.log_path(run_id)
        if not path.exists():
            return ""
        text = path.read_text(encoding="utf-8", errors="replace")
        return text[-MAX_LOG_CHARS:]

    def _alert(
        self, spec: JobSpec, logical: datetime, run_id: str, status: str, error: str | None
    ) -> None:
        run = self.history.run(run_id)
        verb = "timed out" if status == "timeout" else "failed"
        alert = Alert(
            rule=f"job:{spec.name}",
            state="firing",
            severity="error",
            subject=spec.name,
            metric=f"job.{status}",
            value=float(run.attempts),
            condition="",
            window="",
            since=logical,
            at=datetime.now(UTC),
            summary=(
                f"job {spec.name} {verb} for {logical:%Y-%m-%dT%H:%M:%S} after "
                f"{run.attempts} attempt(s): {error}; run {run_id[:12]}, see "
                f"'modelyard jobs logs {run_id[:12]}'"
            ),
        )
        deliver(self.history.store, self.alerting, alert, spec.sinks)
