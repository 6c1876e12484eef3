"""A replica's local spool: append-only segment files, durable before an answer leaves.

Each process appends to its own segment (``seg-NS-PID-RAND.open``, one JSON object per
line, opened ``O_APPEND``), and a request is answered only after its record is in the
kernel. A SIGKILL therefore loses nothing that was answered (the page cache outlives the
process); ``fsync_ms`` adds fsyncs for power loss. On a regular file of a local disk
(``_local_disk.py``) a caller may write its line itself: into the page cache that takes
under a microsecond, where a hand-off to a thread costs two thread wake-ups. That is for
a request alone in its server (``here``): under load the writer thread's group commit is
cheaper, since one write serves a whole loop turn and it runs on another core. Anywhere
else (a network file system, ``fsync_ms`` set, the writer thread busy) requests hand
their line to the writer thread and wait: the thread takes everything queued, writes it
with a single ``write()`` (group commit) and then releases all the waiters. A lock keeps
the two from writing, rotating or recovering the segment at once; the caller never waits
for it (a busy lock means the thread's way).

A writer holds an ``flock`` on its open segment and renames it ``.done`` when it is
closed: at ``segment_bytes``, ``max_age_s`` after its first line (so shipping has a
bounded delay), or at exit. A segment nobody holds (done, or left by a killed process)
is *finished*, and the shipper may take it. Hand-written because no library offers a
multi-process, crash-safe group-commit log; Parquet does the rest.

A write that fails (a full disk, a closed file) or a crash of the thread itself never
leaves a waiter hanging: every waiter is answered with ``PredictionLogUnavailableError``
at once, and so is every later ``append`` while ``problem`` is set. Every ``retry_s``
the thread closes the damaged segment (a torn last line is skipped by readers, and was
never acknowledged), opens a new one and writes a probe byte; once that works the
writer is healthy again, without a restart. A write that hangs (a dead network disk)
sets ``problem`` once it has taken ``write_timeout_s``: the next ``append`` answers its
waiters and itself with the error, with no timer per request; the writer is healthy
again when the write returns.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelyard._files import fsync_folder
from modelyard.backends.predictions._local_disk import is_local_file
from modelyard.errors import PredictionLogUnavailableError

logger = logging.getLogger("modelyard.predictions")

SEGMENT_BYTES = 64 * 1024 * 1024
RETRY_S = 1.0
WRITE_TIMEOUT_S = 10.0


@dataclass(eq=False)  # compared by identity: waiters live in a set
class _Pending:
    """Lines for one write, and the futures of the requests waiting for it (one event
    loop's requests of one loop turn: they are handed over together)."""

    line: bytes
    waiters: list[asyncio.Future[None]] | None
    loop: asyncio.AbstractEventLoop | None
    timer: asyncio.TimerHandle | None = None


# Queued to wake the thread after a caller wrote a line itself: the segment's age is timed
# from its first line, and a full one is rotated, by the thread.
_NUDGE = _Pending(b"", None, None)


@dataclass(eq=False)
class _Group:
    loop: asyncio.AbstractEventLoop
    lines: list[bytes]
    waiters: list[asyncio.Future[None]]


class SegmentWriter:
    """Appends lines to segments under ``folder``; ``on_rotate`` hears of each closed one,
    ``on_health`` of each change of ``problem`` (None when it writes again)."""

    def __init__(
        self,
        folder: Path,
        *,
        fsync_ms: float = 0.0,
        segment_bytes: int = SEGMENT_BYTES,
        max_age_s: float | None = None,
        on_rotate: Callable[[], None] | None = None,
        on_health: Callable[[str | None], None] | None = None,
        retry_s: float = RETRY_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self.folder = folder
        self.fsync_ms = fsync_ms
        self.segment_bytes = segment_bytes
        self.max_age_s = max_age_s
        self.on_rotate = on_rotate
        self.on_health = on_health
        self.retry_s = retry_s
        self.write_timeout_s = write_timeout_s
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._waiting: set[_Pending] = set()  # answered by the thread, even if it fails
        self._group: _Group | None = None  # lines of this loop turn, not yet handed over
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the open segment
        self._path: Path | None = None
        self._written = 0
        self._first_at = 0.0  # monotonic time of the open segment's first line
        self._problem: str | None = None
        self._last_sync = 0.0  # monotonic time of the last fsync (fsync_ms)
        self._busy_since = 0.0  # monotonic start of the write in progress; 0 when idle
        # Held to write, rotate or recover the open segment, by the thread or by a caller
        # writing its own line (``_write_here``, which never waits for it).
        self._lock = threading.Lock()

    @property
    def problem(self) -> str | None:
        """Why this writer cannot write now, or None when it can."""
        if self._thread is not None and not self._thread.is_alive():
            return "writer thread stopped"
        busy = self._busy_since
        if busy and time.monotonic() - busy > self.write_timeout_s:
            return f"a write has not finished in {self.write_timeout_s:g} s (a hung disk?)"
        return self._problem

    def start(self) -> None:
        if self._thread is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open_segment()
        self._last_sync = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="modelyard-predlog", daemon=True)
        self._thread.start()

    async def append(self, line: bytes, here: bool = True) -> None:
        """Queue ``line`` and return once it is written (the caller may then answer);
        raise ``PredictionLogUnavailableError`` at once when it cannot be. ``here``: the
        caller may write it itself where that cannot hang (False: a busy server, whose
        writes are better grouped on the writer thread's own core)."""
        if not line:
            return
        problem = self.problem
        if problem is not None:
            error = _unavailable(problem)
            if self._busy_since:  # a hung write: its waiters get the answer too
                self._answer_waiters(error)
            raise error
        if here and self._write_here(line):
            return
        loop = asyncio.get_running_loop()
        group = self._group
        if group is None or group.loop is not loop:
            # The lines of every request of this loop turn go to the thread as one hand-off
            # (one queue put, one wake-up each way), handed over at the next turn.
            group = self._group = _Group(loop, [], [])
            loop.call_soon(self._hand_off, group)
        done: asyncio.Future[None] = loop.create_future()
        group.lines.append(line)
        group.waiters.append(done)
        await done

    def _write_here(self, data: bytes) -> bool:
        """Write ``data`` on the caller's thread when that cannot hang (see the module
        docstring); False when it is the thread's to write."""
        if self.fsync_ms or not self._lock.acquire(blocking=False):
            return False
        try:
            fd = self._fd
            if fd is None or self._problem is not None or not is_local_file(fd):
                return False
            first = self._written == 0
            try:
                self._write(data)
            except OSError as exc:  # a full disk: fail as the thread would, and let it retry
                self._fail(_os_problem(exc))
                self._queue.put(_NUDGE)
                raise _unavailable(_os_problem(exc)) from None
            if first or self._written >= self.segment_bytes:
                self._queue.put(_NUDGE)  # the thread times the segment's age, or rotates it
            return True
        finally:
            self._lock.release()

    def _hand_off(self, group: _Group) -> None:
        if self._group is group:
            self._group = None
        pending = _Pending(b"".join(group.lines), group.waiters, group.loop)
        # Bounded: a write that hangs must not hold its requests (and clients) for ever.
        pending.timer = group.loop.call_later(self.write_timeout_s, self._expire, pending)
        self._waiting.add(pending)
        self._queue.put(pending)

    def _expire(self, pending: _Pending) -> None:
        self._waiting.discard(pending)
        error = _unavailable(
            f"a write has not finished in {self.write_timeout_s:g} s (a hung disk?)"
        )
        _reject(pending.waiters or [], error)

    def append_nowait(self, line: bytes) -> None:
        """Queue ``line`` without waiting (``close`` flushes it; dropped while failing)."""
        if line and self.problem is None:
            self._queue.put(_Pending(line, None, None))

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        with self._lock:
            self._close_segment()

    def _timeout(self) -> float | None:
        if self._problem is not None:
            return self.retry_s
        if self.max_age_s is None or self._written == 0:
            return None
        return max(0.0, self._first_at + self.max_age_s - time.monotonic())

    def _run(self) -> None:
        while True:
            batch: list[_Pending | None] = []
            try:
                if self._serve(batch):
                    return
            except OSError as exc:  # a full disk, a closed file: answer the waiters now
                self._fail(_os_problem(exc))
            except BaseException as exc:  # a bug, or a fault injected into this thread
                self._fail(f"writer thread failed ({type(exc).__name__}: {exc})")
            if None in batch:  # closing: nothing more will be queued
                return

    def _serve(self, batch: list[_Pending | None]) -> bool:
        """One round: write what is queued, or rotate, or retry a failed writer; True
        once ``close`` asked to stop. ``batch`` is filled in place for the caller."""
        try:
            batch.append(self._queue.get(timeout=self._timeout()))
        except queue.Empty:
            if self._problem is not None:
                self._recover()
            else:  # the open segment is old enough to ship
                self._rotate()
            return False
        while True:  # take everything already queued: one write for all of it
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        pending = [p for p in batch if p is not None]
        if pending and self._problem is not None:  # queued before the fault was seen
            self._answer_waiters(_unavailable(self._problem))
        elif pending:
            with self._lock:
                self._busy_since = time.monotonic()
                try:
                    self._write(b"".join(p.line for p in pending))
                    busy = self._busy_since
                    if self.fsync_ms and (busy - self._last_sync) * 1000 >= self.fsync_ms:
                        assert self._fd is not None
                        os.fsync(self._fd)
                        self._last_sync = time.monotonic()
                finally:
                    self._busy_since = 0.0
            # One wake-up per event loop for everything written, not one per request.
            answered: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
            for p in pending:
                if p.loop is not None and p.waiters:
                    self._waiting.discard(p)
                    answered.setdefault(p.loop, []).append(p)
            for loop, done in answered.items():
                loop.call_soon_threadsafe(_resolve_all, done)
        if None in batch:
            return True
        timeout = self._timeout()
        if self._written >= self.segment_bytes or (timeout is not None and timeout <= 0):
            self._rotate()
        return False

    def _fail(self, problem: str) -> None:
        """Answer every waiter with the error; the first failure of an outage is logged."""
        first = self._problem is None
        self._problem = problem
        self._answer_waiters(_unavailable(problem))
        if first:
            logger.error(
                "the prediction log in %s fails: %s; predictions it cannot record are refused with "
                "503 prediction_log_unavailable (or answered unlogged if "
                'predictions.on_failure = "serve_unlogged"); retrying every %g s',
                self.folder,
                problem,
                self.retry_s,
            )
            if self.on_health is not None:
                self.on_health(problem)

    def _answer_waiters(self, error: PredictionLogUnavailableError) -> None:
        for p in list(self._waiting):
            self._waiting.discard(p)
            if p.loop is not None and p.waiters:
                p.loop.call_soon_threadsafe(_reject, p.waiters, error)

    def _recover(self) -> None:
        """Start a fresh segment and prove it takes a byte; stay failed if it does not."""
        try:
            with self._lock:
                self._close_segment()
                self._open_segment()
                assert self._fd is not None
                os.write(self._fd, b"\n")  # readers skip blank lines; not counted in _written
        except OSError as exc:
            self._problem = _os_problem(exc)
            return
        logger.info("the prediction log writes to %s again", self.folder)
        self._problem = None
        if self.on_health is not None:
            self.on_health(None)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        if self._written == 0:
            self._first_at = time.monotonic()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._written += len(data)

    def _rotate(self) -> None:
        with self._lock:
            self._close_segment()
            self._open_segment()
        if self.on_rotate is not None:
            self.on_rotate()

    def _open_segment(self) -> None:
        name = f"seg-{time.time_ns()}-{os.getpid()}-{secrets.token_hex(3)}.open"
        # Locked under a name shippers do not look at, then renamed (the lock stays with
        # the file): a shipper never sees an unlocked new segment and takes it for a dead
        # writer's, which would remove it under this writer.
        hidden = self.folder / f".{name}"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stat = os.fstat(fd)
            self._path = self.folder / name
            hidden.rename(self._path)
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._fd, self._file_id = fd, (stat.st_dev, stat.st_ino)
        self._written = 0

    def _close_segment(self) -> None:
        if self._fd is None or self._path is None:
            return
        fd, self._fd = self._fd, None
        # After a fault the descriptor may be closed, or its number reused by another file
        # of this process: only a descriptor still on this segment is synced and closed.
        ours = _points_to(fd, self._file_id)
        if ours:
            try:
                os.fsync(fd)
            except OSError:  # the failure that got us here; the rename below still counts
                pass
        if self._written:
            self._path.rename(self._path.with_suffix(".done"))
            fsync_folder(self.folder)  # the rename is what tells shippers it is finished
        else:
            self._path.unlink(missing_ok=True)  # nothing to ship
        if ours:
            os.close(fd)  # closing drops the lock, after the rename
        self._path = None
        self._written = 0


def _os_problem(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    return f"cannot write: {name} ({exc.strerror or exc})"


def _points_to(fd: int, file_id: tuple[int, int] | None) -> bool:
    try:
        stat = os.fstat(fd)
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) == file_id


def _unavailable(problem: str) -> PredictionLogUnavailableError:
    return PredictionLogUnavailableError(
        f"the prediction log cannot record this prediction ({problem}), so it is not "
        "answered; retry on another replica or later"
    )


def _reject(futures: list[asyncio.Future[None]], error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


def _resolve_all(written: list[_Pending]) -> None:
    for pending in written:
        if pending.timer is not None:
            pending.timer.cancel()
        for future in pending.waiters or ():
            if not future.done():
                future.set_result(None)


def segment_id(path: Path) -> str:
    """``seg-NS-PID-RAND``: names the segment's parts in the store, so a re-ship replaces."""
    return path.name.split(".", 1)[0]


def segment_paths(folder: Path) -> list[Path]:
    """Every segment in ``folder``, open or done, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("seg-*"))


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The records of one segment; a torn last line (never acknowledged) is skipped."""
    records = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # shipped and removed since it was listed
        return []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return records


class Claim:
    """An exclusive hold on a finished segment while it is shipped (``with`` block)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def gone(self) -> bool:
        """True when another shipper removed the segment while this one waited."""
        return os.fstat(self._fd).st_nlink == 0

    def release(self) -> None:
        os.close(self._fd)


def claimed_segments(folder: Path) -> Iterator[Claim]:
    """Finished segments, each held with a non-blocking ``flock`` while the caller ships it:
    closed ones, and open ones whose process died. A live writer's segment, or one another
    shipper holds, is passed over."""
    for path in segment_paths(folder):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # renamed or shipped meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        claim = Claim(path, fd)
        try:
            if not claim.gone():
                yield claim
        finally:
            claim.release()
