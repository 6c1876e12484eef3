"""The ``local`` executor: warm worker processes on this machine, one task at a time each.

Why our own worker processes rather than ``concurrent.futures.ProcessPoolExecutor``: a
task past its time limit must stop, and a pool cannot kill one busy worker; here a
worker that overruns is killed and replaced, while idle ones stay warm so that a short
task costs a pipe round trip, not a Python start. Several ``map`` calls at once (a
scheduler's concurrent jobs) share the workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Generator
from multiprocessing.connection import Connection
from typing import Any

from modelyard.backends.executors import Settled
from modelyard.backends.executors._task import PayloadExecutor, settle
from modelyard.backends.executors._worker import PING
from modelyard.errors import TaskError

__all__ = ["LocalExecutor"]

_WORKER = "modelyard.backends.executors._worker"
_START_S = 120  # a Python start and modelyard's imports, on a busy machine


class _Limit:
    """A time limit shared by a map's tasks, counted from the first task sent to a worker
    (worker starts do not count against it)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._deadline: float | None = None
        self._lock = threading.Lock()

    def deadline(self) -> float | None:
        if self.seconds is None:
            return None
        with self._lock:
            if self._deadline is None:
                self._deadline = time.monotonic() + self.seconds
            return self._deadline


class _Worker:
    """One worker process (``_worker.py``) and the two pipes to it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.conn: Connection | None = None  # to the worker
        self.answers: Connection | None = None  # from the worker

    def start(self) -> None:
        """Start the process and wait until it answers: its imports are done."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", _WORKER, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.conn = Connection(to_child_w, readable=False)
        self.answers = Connection(from_child_r, writable=False)
        try:
            self.conn.send(PING)
            if not self.answers.poll(_START_S):
                raise OSError(f"it did not answer within {_START_S} s")
            self.answers.recv_bytes()
        except (EOFError, OSError) as exc:
            how = self.ended() if isinstance(exc, EOFError) else str(exc)
            self.kill()
            raise OSError(f"a worker process did not start ({how})") from None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def interrupt(self) -> None:
        """Kill the process only: the thread waiting on its pipe sees the end and cleans up
        (closing a pipe another thread polls would leave that thread waiting)."""
        if self.process is not None:
            self.process.kill()

    def ended(self) -> str:
        """How the process ended, for the error of the task it was running."""
        code = None
        if self.process is not None:
            try:
                code = self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if code is None:
            return "it stopped answering"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
        for conn in (self.conn, self.answers):
            if conn is not None:
                conn.close()
        self.process = self.conn = self.answers = None

    def ask_to_stop(self) -> None:
        """Tell the worker to exit once its current task is done (``stop`` waits for it)."""
        if self.conn is not None and self.alive:
            try:
                self.conn.send(None)
            except OSError:
                pass

    def stop(self) -> None:
        self.ask_to_stop()
        if self.process is not None:
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class LocalExecutor(PayloadExecutor):
    """Up to ``max_workers`` (default: one per CPU) warm worker processes."""

    def __init__(self, url: str = "local", *, max_workers: int | None = None) -> None:
        self.url = url
        self.max_workers = max_workers or os.cpu_count() or 1
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._free = threading.Semaphore(self.max_workers)
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalExecutor({self.url!r}, max_workers={self.max_workers})"

    def open(self) -> None:
        """Nothing to start: workers start on first use and then stay warm."""
        with self._lock:
            self._closed = False

    def slots(self) -> int:
        return self.max_workers

    def _take(self) -> _Worker:
        self._free.acquire()
        try:
            with self._lock:
                worker = self._idle.pop() if self._idle else _Worker()
            if not worker.alive:
                worker.kill()
                worker.start()
        except BaseException:
            self._free.release()
            raise
        return worker

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._idle.append(worker)
        if closed:
            worker.stop()
        self._free.release()

    def warm(self) -> None:
        """Start one worker, so that the first task does not pay for a Python start and
        modelyard's imports."""
        self._give(self._take())

    def _run(
        self,
        names: list[str],
        paths: tuple[str, ...],
        payloads: list[bytes],
        timeout_s: float | None,
    ) -> Generator[Settled[Any], None, None]:
        count = len(payloads)
        limit = _Limit(timeout_s)
        settled: list[Settled[Any] | None] = [None] * count
        todo = deque(range(count))
        busy: dict[int, _Worker] = {}
        stopped = False
        changed = threading.Condition()

        def serve() -> None:
            while True:
                with changed:
                    if stopped or not todo:
                        return
                    i = todo.popleft()
                try:
                    worker = self._take()
                except Exception as exc:  # no worker would start: this task cannot run
                    result = Settled[Any](names[i], error=TaskError(names[i], str(exc)))
                else:
                    with changed:
                        closing = stopped
                        if not closing:
                            busy[i] = worker
                    if closing:  # the results were closed while this worker was taken
                        self._give(worker)
                        return
                    try:
                        result = self._one(worker, names[i], paths, payloads[i], limit)
                    finally:
                        with changed:
                            busy.pop(i, None)
                        self._give(worker)
                with changed:
                    settled[i] = result
                    changed.notify_all()

        threads = [
            threading.Thread(target=serve, daemon=True, name=f"modelyard-local-{n}")
            for n in range(min(count, self.max_workers))
        ]
        for thread in threads:
            thread.start()
        try:
            for i in range(count):
                with changed:
                    while (result := settled[i]) is None:
                        changed.wait()
                yield result
        finally:
            with changed:
                stopped = True
                for worker in busy.values():
                    worker.interrupt()
            for thread in threads:
                thread.join()

    def _one(
        self,
        worker: _Worker,
        name: str,
        paths: tuple[str, ...],
        payload: bytes,
        limit: _Limit,
    ) -> Settled[Any]:
        deadline = limit.deadline()
        stopped = f"stopped after {limit.seconds:g} s" if limit.seconds is not None else ""
        timed_out = Settled[Any](name, error=TaskError(name, stopped, timed_out=True))
        if deadline is not None and time.monotonic() >= deadline:
            return timed_out  # never started: the worker stays warm for the next task
        try:
            assert worker.conn is not None and worker.answers is not None
            worker.conn.send((paths, payload))
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if worker.answers.poll(left):
                value, error = settle(name, worker.answers.recv_bytes())
                return Settled(name, value, error)
            worker.kill()  # the only way to stop a task that overran its time limit
            return timed_out
        except (EOFError, OSError) as exc:
            how = worker.ended() if worker.process is not None else str(exc)
            worker.kill()
            return Settled(name, error=TaskError(name, f"its worker process died ({how})"))

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
            self._closed = True
        for worker in workers:  # all at once: each takes a moment to exit
            worker.ask_to_stop()
        for worker in workers:
            worker.stop()
