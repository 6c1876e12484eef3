"""The prediction log: every answered prediction, durable before its answer leaves.

Design. Each server process appends to its own segment file (``seg-PID-NS.open``,
one JSON object per line, opened ``O_APPEND``) from one writer thread. Requests hand
their record to that thread and wait for it: the thread takes everything queued,
writes it with a single ``write()`` (group commit) and then releases all the waiters,
so a request is answered only after its record is in the kernel. A SIGKILL of the
server therefore loses nothing that was answered (the page cache outlives the
process); ``fsync_ms`` adds fsyncs for power loss. The request path pays one thread
hand-off, not a write. A writer holds an ``flock`` on its open segment and renames it
``.done`` on rotation or close; ``compact`` turns unlocked segments (done, or left by
a killed process) into Parquet partitioned by model and day, then deletes them.
Hand-written because no library offers a multi-process, crash-safe append log
that compacts to Parquet; Parquet and DuckDB do the reading.

Failed requests are logged too, as one line with their ``status`` and no inputs, so the
error-rate SLO can be computed from the log; ``read_predictions`` leaves them out unless
asked.

PII: input fields tagged ``pii=True`` in the signature are hashed (salted blake2b)
or dropped before they are written.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SEGMENT_BYTES = 64 * 1024 * 1024
_OPT = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class _Pending:
    line: bytes
    done: asyncio.Future[None] | None
    loop: asyncio.AbstractEventLoop | None


@dataclass
class PredictionLog:
    """Appends prediction records under ``folder`` (``.modelyard/predictions``)."""

    folder: Path
    pii: Literal["hash", "drop"] = "hash"
    salt: str = "modelyard"
    fsync_ms: float = 0.0
    segment_bytes: int = SEGMENT_BYTES
    _queue: queue.SimpleQueue[_Pending | None] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _fd: int | None = None
    _path: Path | None = None
    _written: int = 0
    # Recent request ids -> (model, rows), so feedback can be checked without a scan.
    _recent: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    recent_limit: int = 1_000_000

    # -- writing -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        (self.folder / "segments").mkdir(parents=True, exist_ok=True)
        self._open_segment()
        self._thread = threading.Thread(target=self._run, name="modelyard-predlog", daemon=True)
        self._thread.start()

    def record(
        self,
        *,
        request_id: str,
        model: str,
        version: int,
        variant: str,
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        latency_ms: float,
        pii_fields: frozenset[str] = frozenset(),
    ) -> bytes:
        """One JSON line per input row, for ``append``."""
        names_in, names_out = list(inputs), list(outputs)
        ins = [_plain(inputs[n]) for n in names_in]
        outs = [_plain(outputs[n]) for n in names_out]
        rows = len(ins[0]) if ins else (len(outs[0]) if outs else 0)
        now = time.time_ns() // 1000
        self._recent[request_id] = (model, rows)
        if len(self._recent) > self.recent_limit:
            self._recent.popitem(last=False)
        lines = []
        for i in range(rows):
            row_in = {n: v[i] for n, v in zip(names_in, ins, strict=True)}
            for name in pii_fields & row_in.keys():
                if self.pii == "drop":
                    del row_in[name]
                else:
                    row_in[name] = self._hash(row_in[name])
            entry = {
                "request_id": request_id,
                "row": i,
                "ts": now,
                "model": model,
                "version": version,
                "variant": variant,
                "latency_ms": latency_ms,
                "status": 200,
                "inputs": row_in,
                "outputs": {n: v[i] for n, v in zip(names_out, outs, strict=True)},
            }
            lines.append(orjson.dumps(entry, option=_OPT, default=str))
        return b"\n".join(lines) + b"\n" if lines else b""

    def error_line(
        self,
        *,
        request_id: str,
        model: str,
        version: int | None,
        variant: str,
        status: int,
        latency_ms: float,
    ) -> bytes:
        """A failed request (4xx or 5xx), for the error-rate SLO: one line, no inputs."""
        entry = {
            "request_id": request_id,
            "row": 0,
            "ts": time.time_ns() // 1000,
            "model": model,
            "version": version,
            "variant": variant,
            "latency_ms": latency_ms,
            "status": status,
            "inputs": {},
            "outputs": {},
        }
        return orjson.dumps(entry) + b"\n"

    def recent(self, request_id: str) -> tuple[str, int] | None:
        """(model, rows) of a request this process logged lately (no I/O)."""
        return self._recent.get(request_id)

    def lookup(self, request_id: str) -> tuple[str, int] | None:
        """(model, rows) of any logged request; reads the log from disk (blocking)."""
        found = self._recent.get(request_id)
        if found is not None:
            return found
        table = read_predictions(self.folder)
        if table.num_rows == 0:
            return None
        hits = table.filter(pc.equal(table["request_id"], request_id))
        if hits.num_rows == 0:
            return None
        return str(hits["model"][0]), hits.num_rows

    def _hash(self, value: Any) -> str | None:
        return hash_value(value, self.salt)

    async def append(self, line: bytes) -> None:
        """Queue ``line`` and return once it is written (the caller may then answer)."""
        if not line:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(line, done, loop))
        await done

    def append_nowait(self, line: bytes) -> None:
        """Queue ``line`` without waiting (batch scoring; ``close`` flushes it)."""
        if line:
            self._queue.put(_Pending(line, None, None))

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        self._close_segment()

    def _run(self) -> None:
        last_sync = time.monotonic()
        while True:
            first = self._queue.get()
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

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._written += len(data)
        if self._written >= self.segment_bytes:
            self._close_segment()
            self._open_segment()

    def _open_segment(self) -> None:
        name = f"seg-{os.getpid()}-{time.time_ns()}.open"
        self._path = self.folder / "segments" / name
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._written = 0

    def _close_segment(self) -> None:
        if self._fd is None or self._path is None:
            return
        os.fsync(self._fd)
        self._path.rename(self._path.with_suffix(".done"))
        os.close(self._fd)  # closing drops the lock, after the rename
        self._fd = None
        self._path = None


def hash_value(value: Any, salt: str) -> str | None:
    """What a PII field's value becomes in the log: a salted blake2b digest."""
    if value is None:
        return None
    digest = hashlib.blake2b(str(value).encode(), key=salt.encode()[:64], digest_size=8)
    return "h:" + digest.hexdigest()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _plain(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


# -- reading and compaction --------------------------------------------------------------
def _finished_segments(folder: Path) -> Iterator[Path]:
    """Segments no live writer holds: closed ones, and open ones of killed processes."""
    for path in sorted((folder / "segments").glob("seg-*")):
        if path.suffix == ".done":
            yield path
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # renamed by its writer meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer
        finally:
            os.close(fd)
        yield path


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The records of one segment; a torn last line (never acknowledged) is skipped."""
    records = []
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return records


def compact(folder: Path) -> int:
    """Move finished segments into ``folder/model=M/date=D/*.parquet``; return records moved."""
    moved = 0
    for path in _finished_segments(folder):
        records = read_segment(path)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in records:
            day = datetime.fromtimestamp(r["ts"] / 1e6, tz=UTC).date().isoformat()
            groups.setdefault((r["model"], day), []).append(r)
        for (model, day), rows in groups.items():
            target = folder / f"model={model}" / f"date={day}"
            target.mkdir(parents=True, exist_ok=True)
            final = target / f"part-{uuid.uuid4().hex}.parquet"
            tmp = final.with_suffix(".tmp")
            pq.write_table(_table(rows), tmp)
            tmp.rename(final)
            moved += len(rows)
        path.unlink()
    return moved


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    flat = []
    for r in rows:
        entry = {k: v for k, v in r.items() if k not in ("inputs", "outputs")}
        entry["ts"] = datetime.fromtimestamp(r["ts"] / 1e6, tz=UTC)
        entry.update({f"input.{k}": v for k, v in r["inputs"].items()})
        entry.update({f"output.{k}": v for k, v in r["outputs"].items()})
        flat.append(entry)
    return pa.Table.from_pylist(flat)


def read_predictions(
    folder: Path,
    model: str | None = None,
    *,
    errors: bool = False,
    since: datetime | None = None,
) -> pa.Table:
    """Every logged prediction (compacted and not yet compacted), one row per input row.

    With ``errors=True`` failed requests are included too (``status`` other than 200).
    ``since`` skips the day partitions that end before it (rows are not filtered by time:
    callers cut their window exactly).
    """
    parts = []
    pattern = f"model={model}/date=*/*.parquet" if model else "model=*/date=*/*.parquet"
    first_day = None if since is None else since.astimezone(UTC).date().isoformat()
    for path in sorted(folder.glob(pattern)):
        if first_day is not None and path.parent.name.removeprefix("date=") < first_day:
            continue
        parts.append(pq.read_table(path, partitioning=None))
    pending: list[dict[str, Any]] = []
    for path in sorted((folder / "segments").glob("seg-*")):
        pending += [r for r in read_segment(path) if model is None or r["model"] == model]
    if pending:
        parts.append(_table(pending))
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts, promote_options="permissive")
    if errors or "status" not in table.column_names:
        return table
    answered = pc.fill_null(pc.equal(table["status"], 200), True)
    return table.filter(answered)
