"""The scheduler: runs each job's due slots, exactly once across restarts and replicas.

Nothing is kept in memory that a restart would lose. What has run is the slot table:
on every tick a job's due slots are those after the newest one taken, so a scheduler
that was down finds the slots it missed (``catchup = "all"`` runs them in order,
``"latest"`` runs the newest and records the others as skipped), and two schedulers
on one database split the slots between them through the slot claim (_history.py).
A slot whose owner died mid-run has a lapsing lease and is run again by whoever
finds it first: a crash can repeat an unfinished run, never a finished one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from modelyard import _time
from modelyard.backends.executors.local import LocalExecutor
from modelyard.jobs._history import JobRun, lapsed
from modelyard.jobs._runner import Runner
from modelyard.jobs._spec import JobSpec
from modelyard.monitoring import Alert, deliver

logger = logging.getLogger("modelyard.jobs")


class Scheduler:
    """Ticks over the workspace's scheduled jobs; ``clock`` is injectable (tests, replays)."""

    def __init__(
        self,
        jobs: Mapping[str, JobSpec],
        runner: Runner,
        *,
        max_active: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        trigger: str = "schedule",
    ) -> None:
        self.jobs = {n: s for n, s in jobs.items() if s.schedule is not None}
        self.runner = runner
        self.history = runner.history
        self.owner = runner.owner
        self.clock = clock
        # What the history says started a due slot's run: "schedule" on the calendar,
        # "replay" when a simulated clock drives the scheduler (its runs end long after
        # their slots' deadlines by the wall clock, and are not late for that).
        self.trigger = trigger
        self._linked = _linked(self.jobs)
        self._pool = ThreadPoolExecutor(max_active, thread_name_prefix="modelyard-job")
        self._busy: set[str] = set()  # jobs with runs in flight here
        self._closing = threading.Event()  # no slot starts once set (Ctrl-C, SIGTERM)
        self._wake = threading.Event()
        self._lock = threading.Lock()

    # -- one tick ---------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> list[Future[list[JobRun]]]:
        """Start each job's due slots (in order, one job's runs after another); check SLAs.

        Returns one future per job that had work: the runs it made, oldest first.
        """
        now = now or self.clock()
        started: list[Future[list[JobRun]]] = []
        for spec in self.jobs.values():
            with self._lock:
                if spec.name in self._busy:  # its earlier slots are still running
                    continue
            slots = self._ready(spec, sorted(self._due(spec, now) + self._lapsed(spec)))
            if slots:
                started.append(self._submit(spec, slots))
        for spec in self.jobs.values():
            if spec.sla_s is not None:
                self._check_sla(spec, now)
        return started

    def _due(self, spec: JobSpec, now: datetime) -> list[tuple[datetime, str]]:
        assert spec.schedule is not None
        due = spec.schedule.due(self.history.last_slot(spec.name), now)
        if spec.catchup == "latest" and len(due) > 1:
            for logical in due[:-1]:
                if self.history.skip(spec.name, logical, self.owner):
                    logger.info("job %s: skipped %s (catchup = latest)", spec.name, logical)
            due = due[-1:]
        return [(logical, self.trigger) for logical in due]

    def _lapsed(self, spec: JobSpec) -> list[tuple[datetime, str]]:
        now_us = _time.now_us()
        found = []
        for slot in self.history.slots(spec.name, ("running",)):
            if lapsed(slot, now_us):
                logical = _time.to_datetime(slot["logical_date"])
                assert logical is not None
                found.append((logical, "recovery"))
        return found

    def _ready(
        self, spec: JobSpec, slots: list[tuple[datetime, str]]
    ) -> list[tuple[datetime, str]]:
        """The first of ``slots`` that may start: its ``after`` jobs have ended every slot
        due by this slot's own time (features before the scores of the same day), and the
        other jobs linked to it by ``after`` every slot due before it (a catch-up goes day
        by day: the day's drift check before the Sunday's training, the training before
        the next day's scores). The rest stay due; a later tick (when a run ends) starts
        them."""
        assert spec.schedule is not None
        for i, (logical, _) in enumerate(slots):
            runs_at = spec.schedule.next_after(logical)
            for other in self._linked.get(spec.name, ()):
                before = runs_at if other in spec.after else runs_at - _INSTANT
                if self._unsettled(self.jobs[other], before):
                    return slots[:i]
        return slots

    def _unsettled(self, other: JobSpec, by: datetime) -> bool:
        """Whether a slot of ``other`` due by ``by`` has not run or not ended yet."""
        assert other.schedule is not None
        last = self.history.last_slot(other.name)
        if last is None:  # never ran: a new job does not replay history, nothing to await
            return False
        if other.schedule.due(last, by):
            return True
        return any(
            other.schedule.next_after(_time.to_datetime(slot["logical_date"])) <= by
            for slot in self.history.slots(other.name, ("running",))
        )

    def _submit(self, spec: JobSpec, slots: list[tuple[datetime, str]]) -> Future[list[JobRun]]:
        with self._lock:
            self._busy.add(spec.name)
        future = self._pool.submit(self._run_in_order, spec, sorted(slots))
        future.add_done_callback(lambda f: self._done(f, spec.name))
        return future

    def _run_in_order(self, spec: JobSpec, slots: list[tuple[datetime, str]]) -> list[JobRun]:
        # Each slot is claimed only when its turn comes, so no lease waits in a queue;
        # another scheduler may take later slots meanwhile, and each still runs once.
        runs = []
        for logical, trigger in slots:
            if self._closing.is_set():  # stopping: the slots not started stay due
                break
            if self.history.claim(spec.name, logical, self.owner, self.runner.lease_s):
                if trigger == "recovery":
                    logger.warning("job %s: slot %s lapsed; running it again", spec.name, logical)
                runs.append(self.runner.execute(spec, logical, trigger=trigger))
        return runs

    def _done(self, future: Future[list[JobRun]], job: str) -> None:
        with self._lock:
            self._busy.discard(job)
        self._wake.set()  # a slot that fell due while this job ran can start now
        exc = future.exception()
        if exc is not None:
            logger.error("job %s: a run failed inside the scheduler: %s", job, exc)

    def _check_sla(self, spec: JobSpec, now: datetime) -> None:
        assert spec.schedule is not None and spec.sla_s is not None
        for slot in self.history.slots(spec.name, ("running", "failed", "skipped")):
            if slot["sla_alerted"]:
                continue
            logical = _time.to_datetime(slot["logical_date"])
            assert logical is not None
            deadline = spec.schedule.interval(logical)[1] + timedelta(seconds=spec.sla_s)
            if now < deadline or not self.history.mark_sla_alerted(spec.name, logical):
                continue
            alert = Alert(
                rule=f"job:{spec.name}",
                state="firing",
                severity="error",
                subject=spec.name,
                metric="job.sla_missed",
                value=None,
                condition="",
                window="",
                since=logical,
                at=now,
                summary=(
                    f"job {spec.name} has not succeeded for {logical:%Y-%m-%dT%H:%M:%S} by its "
                    f"SLA deadline {deadline:%Y-%m-%dT%H:%M:%S} (slot is {slot['state']})"
                ),
            )
            deliver(self.history.store, self.runner.alerting, alert, spec.sinks)

    # -- the long-running loop -------------------------------------------------------------------
    def next_due(self, now: datetime) -> datetime | None:
        """When the next slot of any job becomes due."""
        ends = [s.schedule.next_after(now) for s in self.jobs.values() if s.schedule is not None]
        return min(ends) if ends else None

    def run_forever(self, stop: threading.Event, *, poll_s: float = 5.0) -> None:
        """Tick until ``stop`` is set, then wait for the runs in flight to end."""
        executors = self.runner.executors
        if any(executors.url(s.executor) == "local" for s in self.jobs.values()):
            local = executors.get("local")
            if isinstance(local, LocalExecutor):
                local.warm()  # the first slot should start on time, not after a Python start
        while not stop.is_set():
            self.tick()
            now = self.clock()
            upcoming = self.next_due(now)
            wait = poll_s if upcoming is None else (upcoming - now).total_seconds()
            # Wake at the next due time, but also every poll_s for lapsed leases and SLAs.
            # Sleep until the next due time, a job finishing, or at most a second (so that
            # a stop is noticed soon); every tick also looks for lapsed leases and SLAs.
            self._wake.wait(max(0.0, min(wait, poll_s, 1.0)))
            self._wake.clear()
        self.close()

    def close(self) -> None:
        """Start no more slots; wait for the runs in flight to end."""
        self._closing.set()
        self._pool.shutdown(wait=True)


_INSTANT = timedelta(microseconds=1)


def _linked(jobs: Mapping[str, JobSpec]) -> dict[str, set[str]]:
    """Each job's other jobs in its group: those joined to it by ``after``, either way and
    through others (features, scores, drift and training of one pipeline)."""
    neighbours: dict[str, set[str]] = {name: set() for name in jobs}
    for spec in jobs.values():
        for upstream in spec.after:
            if upstream in jobs:
                neighbours[spec.name].add(upstream)
                neighbours[upstream].add(spec.name)
    groups: dict[str, set[str]] = {}
    for name in jobs:
        if name in groups:
            continue
        group, todo = {name}, [name]
        while todo:
            for other in neighbours[todo.pop()] - group:
                group.add(other)
                todo.append(other)
        for member in group:
            groups[member] = group - {member}
    return groups


def run_due(scheduler: Scheduler, now: datetime | None = None) -> list[JobRun]:
    """Run everything due at ``now`` and wait for it, tick after tick until nothing more
    starts (a slot waiting on its ``after`` jobs starts once they end); oldest first."""
    runs: list[JobRun] = []
    while futures := scheduler.tick(now):
        made = wait_all(futures)
        if not made:  # only slots another scheduler took meanwhile: nothing was unblocked
            break
        runs += made
    return runs


def wait_all(futures: list[Future[list[JobRun]]], timeout: float | None = None) -> list[JobRun]:
    """The runs of ``futures`` once they end, in order (for ``scheduler --once``, tests)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    runs: list[JobRun] = []
    for future in futures:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        runs += future.result(left)
    return runs
