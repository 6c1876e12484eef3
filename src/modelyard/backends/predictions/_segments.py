"""A replica's local spool: append-only segment files, durable before an answer leaves.

Each process appends to its own segment (``seg-NS-PID-RAND.open``, one JSON object per
line, opened ``O_APPEND``) from one writer thread. Requests hand their line to that
thread and wait: the thread takes everything queued, writes it with a single
``write()`` (group commit) and then releases all the waiters, so a request is answered
only after its record is in the kernel. A SIGKILL therefore loses nothing that was
answered (the page cache outlives the process); ``fsync_ms`` adds fsyncs for power
loss. The request path pays one thread hand-off, not a write.

A writer holds an ``flock`` on its open segment and renames it ``.done`` when it is
closed: at ``segment_bytes``, ``max_age_s`` after its first line (so shipping has a
bounded delay), or at exit. A segment nobody holds (done, or left by a killed process)
is *finished*, and the shipper may take it. Hand-written because no library offers a
multi-process, crash-safe group-commit log; Parquet does the rest.
"""

from __future__ import annotations

import asyncio
import fcntl
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

SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass
class _Pending:
    line: bytes
    done: asyncio.Future[None] | None
    loop: asyncio.AbstractEventLoop | None


class SegmentWriter:
    """Appends lines to segments under ``folder``; ``on_rotate`` hears of each closed one."""

    def __init__(
        self,
        folder: Path,
        *,
        fsync_ms: float = 0.0,
        segment_bytes: int = SEGMENT_BYTES,
        max_age_s: float | None = None,
        on_rotate: Callable[[], None] | None = None,
    ) -> None:
        self.folder = folder
        self.fsync_ms = fsync_ms
        self.segment_bytes = segment_bytes
        self.max_age_s = max_age_s
        self.on_rotate = on_rotate
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._written = 0
        self._first_at = 0.0  # monotonic time of the open segment's first line

    def start(self) -> None:
        if self._thread is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open_segment()
        self._thread = threading.Thread(target=self._run, name="modelyard-predlog", daemon=True)
        self._thread.start()

    async def append(self, line: bytes) -> None:
        """Queue ``line`` and return once it is written (the caller may then answer)."""
        if not line:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(line, done, loop))
        await done

    def append_nowait(self, line: bytes) -> None:
        """Queue ``line`` without waiting (``close`` flushes it)."""
        if line:
            self._queue.put(_Pending(line, None, None))

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        self._close_segment()

    def _timeout(self) -> float | None:
        if self.max_age_s is None or self._written == 0:
            return None
        return max(0.0, self._first_at + self.max_age_s - time.monotonic())

    def _run(self) -> None:
        last_sync = time.monotonic()
        while True:
            try:
                first = self._queue.get(timeout=self._timeout())
            except queue.Empty:  # the open segment is old enough to ship
                self._rotate()
                continue
            batch = [first]
            while True:  # take everything already queued: one write for all of it
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(p is None for p in batch)
            pending = [p for p in batch if p is not None]
            if pending:
                self._write(b"".join(p.line for p in pending))
                if self.fsync_ms and (time.monotonic() - last_sync) * 1000 >= self.fsync_ms:
                    assert self._fd is not None
                    os.fsync(self._fd)
                    last_sync = time.monotonic()
                for p in pending:
                    if p.loop is not None and p.done is not None:
                        p.loop.call_soon_threadsafe(_resolve, p.done)
            if stop:
                return
            timeout = self._timeout()
            if self._written >= self.segment_bytes or (timeout is not None and timeout <= 0):
                self._rotate()

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
        self._fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._path = self.folder / name
        hidden.rename(self._path)
        self._written = 0

    def _close_segment(self) -> None:
        if self._fd is None or self._path is None:
            return
        os.fsync(self._fd)
        if self._written:
            self._path.rename(self._path.with_suffix(".done"))
            fsync_folder(self.folder)  # the rename is what tells shippers it is finished
        else:
            self._path.unlink(missing_ok=True)  # nothing to ship
        os.close(self._fd)  # closing drops the lock, after the rename
        self._fd = None
        self._path = None


def _resolve(future: asyncio.Future[None]) -> None:
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
