"""Shipping: a replica's finished segments become Parquet parts in the shared store.

A segment's parts are named after it, so shipping one twice (a crash after the put,
before the segment was removed) replaces the same parts instead of doubling rows.
The segment is removed only after every part is in the store: a store that is down
costs delay, never rows, and the next round (or the next start, or the compaction
job) ships what is left.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from modelyard._parent import die_with_parent
from modelyard._redact import redact
from modelyard.backends.predictions._parts import PartStore
from modelyard.backends.predictions._read import Parts
from modelyard.backends.predictions._segments import claimed_segments, read_segment, segment_id

logger = logging.getLogger("modelyard.predictions")


def ship_folder(spool: Path, store: PartStore, to_parts: Parts) -> int:
    """Ship every finished segment of ``spool``; return the records shipped."""
    shipped = 0
    for claim in claimed_segments(spool):
        records = read_segment(claim.path)
        for key, table in to_parts(records, segment_id(claim.path)).items():
            store.put(key, table)
        claim.path.unlink(missing_ok=True)
        shipped += len(records)
    return shipped


T = TypeVar("T")


class ChildProcess:
    """Runs a function in one spawned process of its own (started on first use).

    A model server ships from a child: turning a few seconds of segments into Parquet is
    Python work that holds the GIL for a hundred milliseconds or more, and in the
    server's process every request waits for it (c=32 p99 went from 5 ms to 50-100 ms).
    When the child cannot be started or dies, the work runs here instead (logged once).
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False

    def start(self) -> None:
        """Start the process now, from this thread: Linux ends the child when the thread
        that made it ends (PR_SET_PDEATHSIG), so it must not be a short-lived one."""
        try:
            context = multiprocessing.get_context("spawn")  # fork copies held locks
            self._pool = ProcessPoolExecutor(
                1, mp_context=context, initializer=_shipping_child, initargs=(os.getpid(),)
            )
            self._pool.submit(os.getpid)  # spawns it; not waited for
        except OSError as exc:
            self._give_up(exc)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the child; an error ``fn`` raises there (a store that is down)
        is the caller's, as if run here. Only a child that cannot start or has died moves
        the work into this process."""
        if self._broken or self._pool is None:
            return fn(*args)
        try:
            future = self._pool.submit(fn, *args)
        except (BrokenProcessPool, OSError) as exc:
            self._give_up(exc)
            return fn(*args)
        try:
            return future.result()
        except BrokenProcessPool as exc:
            self._give_up(exc)
            return fn(*args)

    def _give_up(self, exc: BaseException) -> None:
        self._broken = True
        logger.warning(
            "the prediction log's shipping process failed (%s); shipping in this "
            "process from now on",
            type(exc).__name__,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _shipping_child(parent_pid: int) -> None:
    """Set up the shipping process. Ctrl-C and a stop signal sent to the server's process
    group are the server's to act on: it stops shipping and ends this process itself, so
    a stop never breaks the pool mid-way. A server that dies outright takes it along."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent_pid, signal.SIGKILL)


class Shipper:
    """A thread that runs ``ship`` every ``interval_s``, or at once when woken."""

    def __init__(self, ship: Callable[[], int], interval_s: float, where: str) -> None:
        self.ship = ship
        self.interval_s = interval_s
        self.where = where
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="modelyard-shipper", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def run_once(self) -> bool:
        """One round; a failure is logged once per outage and retried next round."""
        try:
            self.ship()
        except Exception as exc:  # the store may be down: keep serving, keep the spool
            if not self._failing:
                logger.warning(
                    "cannot ship the prediction log to %s (%s: %s); records stay in the "
                    "local spool and are shipped when it answers",
                    redact(self.where),
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("shipping the prediction log to %s again", redact(self.where))
        self._failing = False
        return True
