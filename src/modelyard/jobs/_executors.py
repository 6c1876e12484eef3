"""Executors: where a job's calls run. ``local`` (worker processes) or ``ray`` (tasks).

Both run the same wrapper (``_context.call``) on the same picklable context, so a job
function cannot tell them apart. Why our own worker processes rather than
``concurrent.futures.ProcessPoolExecutor``: a timeout must stop the call, and a pool
cannot kill one busy worker; here a worker that overruns is killed and replaced, while
idle ones stay warm so that a short job costs a pipe round trip, not a Python start.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from modelyard.errors import BackendUnavailableError, ConfigError
from modelyard.jobs._context import PING, JobContext, Outcome, call

LOCAL_RAY_CPUS = 2
_WORKER = "modelyard.jobs._worker"


@dataclass(frozen=True)
class Task:
    function: str
    context: JobContext
    log_path: str | None


class Executor(Protocol):
    def run(self, tasks: Sequence[Task], timeout_s: float | None) -> list[Outcome]:
        """Run every task; those unfinished after ``timeout_s`` end as ``timeout``."""
        ...

    def close(self) -> None: ...


class _Worker:
    """One warm worker process (``_worker.py``) and the two pipes to it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.conn: Connection | None = None  # to the worker
        self.answers: Connection | None = None  # from the worker

    def start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelyard.jobs._worker",
                    str(to_child_r),
                    str(from_child_w),
                ],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.conn = Connection(to_child_w, readable=False)
        self.answers = Connection(from_child_r, writable=False)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
        for conn in (self.conn, self.answers):
            if conn is not None:
                conn.close()
        self.process = self.conn = self.answers = None

    def stop(self) -> None:
        if self.conn is not None and self.process is not None and self.alive:
            try:
                self.conn.send(None)
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


class LocalExecutor:
    """Up to ``max_workers`` warm worker processes, shared by concurrent runs."""

    def __init__(self, max_workers: int = 2) -> None:
        self.max_workers = max_workers
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._free = threading.Semaphore(max_workers)

    def _take(self) -> _Worker:
        self._free.acquire()
        with self._lock:
            worker = self._idle.pop() if self._idle else _Worker()
        if not worker.alive:
            worker.kill()
            worker.start()
        return worker

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)
        self._free.release()

    def warm(self) -> None:
        """Start one worker and wait until it answers, so that the first run does not pay
        for a Python start and modelyard's imports."""
        worker = self._take()
        try:
            assert worker.conn is not None and worker.answers is not None
            worker.conn.send(PING)
            if not worker.answers.poll(60):
                worker.kill()
            else:
                worker.answers.recv()
        except (EOFError, OSError):
            worker.kill()
        finally:
            self._give(worker)

    def run(self, tasks: Sequence[Task], timeout_s: float | None) -> list[Outcome]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        outcomes: list[Outcome | None] = [None] * len(tasks)
        threads = [
            threading.Thread(target=self._one, args=(task, deadline, outcomes, i), daemon=True)
            for i, task in enumerate(tasks)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [o if o is not None else Outcome("error", None, "lost") for o in outcomes]

    def _one(self, task: Task, deadline: float | None, out: list[Outcome | None], i: int) -> None:
        worker = self._take()
        partition = task.context.partition
        try:
            assert worker.conn is not None and worker.answers is not None
            worker.conn.send(task)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if worker.answers.poll(left):
                out[i] = worker.answers.recv()
            else:
                worker.kill()  # the only way to stop a call that overran its timeout
                out[i] = Outcome("timeout", partition, "timed out")
        except (EOFError, OSError, BrokenPipeError) as exc:
            worker.kill()
            out[i] = Outcome("error", partition, f"the worker process died ({exc or 'exit'})")
        finally:
            self._give(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.stop()


class RayExecutor:
    """One Ray task per call; ``address`` None starts a local Ray instance."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self._ray: Any = None
        self._owns = False

    def _start(self) -> Any:
        if self._ray is not None:
            return self._ray
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "the 'ray' executor needs Ray, which is not installed; "
                "run pip install 'modelyard[ray]' or set executor = 'local'"
            ) from None
        if not ray.is_initialized():
            self._owns = True
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.WARNING)
                else:
                    ray.init(
                        num_cpus=LOCAL_RAY_CPUS,
                        include_dashboard=False,
                        logging_level=logging.WARNING,
                    )
            except ConnectionError as exc:
                raise BackendUnavailableError(
                    f"cannot connect to Ray at {self.address!r} ({str(exc).splitlines()[0]}); "
                    "start one with 'ray start --head' or leave out the address"
                ) from None
        self._ray = ray
        return ray

    def run(self, tasks: Sequence[Task], timeout_s: float | None) -> list[Outcome]:
        ray = self._start()
        remote = ray.remote(max_retries=0)(call)
        refs = [remote.remote(t.function, t.context, t.log_path) for t in tasks]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        done = set(ready)
        outcomes: list[Outcome] = []
        for task, ref in zip(tasks, refs, strict=True):
            if ref in done:
                try:
                    outcomes.append(ray.get(ref))
                except Exception as exc:  # the task's process died, or Ray failed it
                    line = str(exc).strip().splitlines()[0] if str(exc).strip() else "failed"
                    outcomes.append(Outcome("error", task.context.partition, line))
            else:
                ray.cancel(ref, force=True)
                outcomes.append(Outcome("timeout", task.context.partition, "timed out"))
        return outcomes

    def close(self) -> None:
        if self._ray is not None and self._owns:
            self._ray.shutdown()
        self._ray = None


class Executors:
    """The executors a runner's jobs name, each made on first use and closed together."""

    def __init__(self, *, local_workers: int = 2) -> None:
        self.local_workers = local_workers
        self._made: dict[str, Executor] = {}
        self._lock = threading.Lock()

    def get(self, kind: str) -> Executor:
        with self._lock:
            if kind not in self._made:
                if kind == "local":
                    self._made[kind] = LocalExecutor(self.local_workers)
                else:
                    address = kind if kind.startswith("ray://") else None
                    self._made[kind] = RayExecutor(address)
            return self._made[kind]

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, {}
        for executor in made.values():
            executor.close()
