"""The prediction log of one workspace: this host's spool, shipped to one shared store.

Writing (a server): ``start()``, then per request ``record(...)`` and ``await
append(line)``; the answer leaves once the line is in the local spool (see
``_segments.py``). Each closed segment is shipped to the store as Parquet within
``max_delay_s`` (``_ship.py``). ``close()`` ships what is left.

Reading (monitoring, the canary judge, feedback, reports): ``read()``, ``read_labels()``
and ``lookup()`` see every replica's shipped rows plus this host's unshipped ones
(``_read.py``), so N replicas that share a store are one service.

Failed requests are logged too, as one line with their ``status`` and no inputs, so the
error-rate SLO can be computed from the log; ``read`` leaves them out unless asked.
PII: input fields tagged ``pii`` are hashed (HMAC-SHA256 under the workspace's PII key)
or dropped before they are written.

When the spool cannot be written (a full disk, a failed writer thread) ``append`` raises
``PredictionLogUnavailableError`` at once (a 503), or with ``on_failure="serve_unlogged"``
returns and the answer leaves unlogged; ``problems()`` says what is wrong, ``observer``
hears of it ("down", "up", "rejected", "unlogged"), and the writer retries by itself.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from modelyard._redact import redact
from modelyard._time import now_us
from modelyard.backends.predictions._batch import BatchLog
from modelyard.backends.predictions._compact import MIN_AGE_S, Maintenance, compact, retain
from modelyard.backends.predictions._layout import (
    LABEL_STREAM,
    PREDICTION_STREAM,
    hash_value,
    label_parts,
    pii_policy,
    prediction_parts,
)
from modelyard.backends.predictions._parts import LocalParts, PartStore
from modelyard.backends.predictions._read import RequestIndex, read_stream
from modelyard.backends.predictions._segments import (
    RETRY_S,
    SEGMENT_BYTES,
    WRITE_TIMEOUT_S,
    SegmentWriter,
    read_segment,
    segment_paths,
)
from modelyard.backends.predictions._ship import ChildProcess, Shipper, ship_folder
from modelyard.errors import PredictionLogUnavailableError

_OPT = orjson.OPT_SERIALIZE_NUMPY
DEFAULT_MAX_DELAY_S = 10.0
OnFailure = Literal["reject", "serve_unlogged"]
ON_FAILURE: tuple[OnFailure, ...] = ("reject", "serve_unlogged")


def _plain(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


class PredictionLog:
    """Spool under ``spool`` (``.modelyard/predictions``), parts in ``store``."""

    def __init__(
        self,
        spool: Path,
        store: PartStore,
        *,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        pii: Literal["hash", "drop"] = "hash",
        pii_key: bytes | None = None,
        fsync_ms: float = 0.0,
        segment_bytes: int = SEGMENT_BYTES,
        # Requests remembered in memory for feedback lookups (older ones are found in the
        # spool and the store): about 250 bytes each, so 100,000 is 25 MB; a million grew a
        # busy server by 250 MB over its first minutes.
        recent_limit: int = 100_000,
        feedback_days: int = 30,
        on_failure: OnFailure = "reject",
        retry_s: float = RETRY_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self.spool = Path(spool)
        self.store = store
        self.max_delay_s = max_delay_s
        self.pii = pii
        # The workspace passes its own key (hashes then agree across restarts and
        # replicas); without one, a random key: never a constant anyone could know.
        self.pii_key = pii_key or secrets.token_bytes(32)
        self.fsync_ms = fsync_ms
        self.segment_bytes = segment_bytes
        self.recent_limit = recent_limit
        self.feedback_days = feedback_days
        self.on_failure = on_failure
        self.retry_s = retry_s
        self.write_timeout_s = write_timeout_s
        # Told "down", "up", "rejected" or "unlogged" (from the writer thread too): metrics.
        self.observer: Callable[[str], None] | None = None
        # Recent request ids -> (model, rows), so feedback is checked without I/O.
        self._recent: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._writers: dict[str, SegmentWriter] = {}
        self._shipper: Shipper | None = None
        self._child: ChildProcess | None = None  # ships off this process (start())
        self._index: RequestIndex | None = None

    def __repr__(self) -> str:
        return f"PredictionLog(spool={str(self.spool)!r}, store={redact(self.store.url)!r})"

    @property
    def settle_s(self) -> float:
        """How long after a moment every replica's rows of it are readable here: none
        when the store is this spool's own folder (one host), else ``max_delay_s``."""
        if isinstance(self.store, LocalParts) and self.store.root == self.spool:
            return 0.0
        return self.max_delay_s

    @property
    def segments(self) -> Path:
        """This host's unshipped predictions."""
        return self.spool / "segments"

    @property
    def label_segments(self) -> Path:
        return self.spool / "labels" / "segments"

    # -- writing -------------------------------------------------------------------------
    def start(self, *, ship_in_child: bool = False) -> None:
        """Open this process's segments and start shipping (leftovers of a dead process too).

        ``ship_in_child``: segments become Parquet in a process of their own (``_ship.py``
        ``ChildProcess``), not in this one's threads; what a model server asks for."""
        if self._writers:
            return
        if ship_in_child:
            self._child = ChildProcess()
            self._child.start()
        # Half the delay for a segment to close, a quarter for the shipper to notice a
        # segment it was not told of (one left by a killed process): within max_delay_s.
        self._shipper = Shipper(self.ship, self.max_delay_s / 4, self.store.url)
        for name, folder in (("predictions", self.segments), ("labels", self.label_segments)):
            writer = SegmentWriter(
                folder,
                fsync_ms=self.fsync_ms,
                segment_bytes=self.segment_bytes,
                max_age_s=self.max_delay_s / 2,
                on_rotate=self._shipper.wake,
                on_health=self._health_changed,
                retry_s=self.retry_s,
                write_timeout_s=self.write_timeout_s,
            )
            writer.start()
            self._writers[name] = writer
        self._shipper.start()

    def problems(self) -> dict[str, str]:
        """What keeps each writer ("predictions", "labels") from writing now; empty when
        all can."""
        return {
            name: problem
            for name, writer in self._writers.items()
            if (problem := writer.problem) is not None
        }

    def _health_changed(self, problem: str | None) -> None:
        self._notify("down" if problem is not None else "up")

    def _notify(self, event: str) -> None:
        if self.observer is not None:
            self.observer(event)

    def close(self) -> None:
        """Flush and close this process's segments, then ship them (once; a store that is
        down leaves them in the spool for the next start or the compaction job)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._shipper is not None:
            self._shipper.stop()
            self._shipper.run_once()
            self._shipper = None
        if self._child is not None:
            self._child.close()
            self._child = None

    def ship(self) -> int:
        """Ship this host's finished segments now; return the records shipped."""
        if self._child is not None:
            return self._child.run(_ship_both, self.segments, self.label_segments, self.store)
        return _ship_both(self.segments, self.label_segments, self.store)

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
        pii_fields: Mapping[str, bool | str] | None = None,
    ) -> bytes:
        """One JSON line per input row, for ``append``."""
        names_in, names_out = list(inputs), list(outputs)
        ins = [_plain(inputs[n]) for n in names_in]
        outs = [_plain(outputs[n]) for n in names_out]
        rows = len(ins[0]) if ins else (len(outs[0]) if outs else 0)
        now = now_us()
        self._recent[request_id] = (model, rows)
        if len(self._recent) > self.recent_limit:
            self._recent.popitem(last=False)
        lines = []
        policies = {n: pii_policy(tag, self.pii) for n, tag in (pii_fields or {}).items()}
        for i in range(rows):
            row_in = {n: v[i] for n, v in zip(names_in, ins, strict=True)}
            for name, policy in policies.items():
                if name not in row_in:
                    continue
                if policy == "drop":
                    del row_in[name]
                else:
                    row_in[name] = hash_value(row_in[name], self.pii_key)
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
            "ts": now_us(),
            "model": model,
            "version": version,
            "variant": variant,
            "latency_ms": latency_ms,
            "status": status,
            "inputs": {},
            "outputs": {},
        }
        return orjson.dumps(entry) + b"\n"

    async def append(self, line: bytes, alone: bool = True) -> None:
        """Queue ``line`` and return once it is in the spool (the caller may then answer).

        Raises ``PredictionLogUnavailableError`` when it cannot be written, unless
        ``on_failure`` is "serve_unlogged": then the line is dropped and counted.
        ``alone=False`` (a busy server) leaves the write to the writer thread's group
        commit even where the caller could make it (``SegmentWriter.append``).
        """
        try:
            await self._writer("predictions").append(line, here=alone)
        except PredictionLogUnavailableError:
            if self.on_failure == "serve_unlogged":
                self._notify("unlogged")
                return
            self._notify("rejected")
            raise

    def append_nowait(self, line: bytes) -> None:
        self._writer("predictions").append_nowait(line)

    @staticmethod
    def label_line(request_id: str, label: Any, row: int, model: str) -> bytes:
        """A delayed label for ``append_labels``."""
        record = {
            "request_id": request_id,
            "row": row,
            "label": label,
            "ts": now_us(),
            "model": model,
        }
        return orjson.dumps(record) + b"\n"

    async def append_labels(self, lines: bytes) -> None:
        """Labels are never dropped: a label the log cannot keep is refused (503)."""
        await self._writer("labels").append(lines)

    def _writer(self, name: str) -> SegmentWriter:
        writer = self._writers.get(name)
        if writer is None:
            raise RuntimeError("PredictionLog.start() was not called; start it before writing")
        return writer

    def maintain(
        self, *, keep_days: int | None = None, min_age_s: float = MIN_AGE_S
    ) -> Maintenance:
        """Ship this host's leftovers, merge small parts, and drop days past ``keep_days``
        (what the compaction job runs; None keeps every day)."""
        shipped = self.ship()
        merged = compact(self.store, min_age_s=min_age_s)
        dropped = Maintenance() if keep_days is None else retain(self.store, keep_days)
        return Maintenance(
            records_shipped=shipped,
            parts_merged=merged.parts_merged,
            parts_written=merged.parts_written,
            parts_deleted=dropped.parts_deleted,
            days_deleted=dropped.days_deleted,
        )

    def new_batch(self, *, ts: datetime | None = None, key: str | None = None) -> BatchLog:
        """A batch-scoring job's log: stage its parts, then ``batch.publish(self.store)``.

        ``ts``: the time every row is logged at (default: when each chunk is scored); a
        pipeline replaying past days gives the day's time, so windows read by day.
        ``key``: publishing replaces the rows an earlier batch with this key logged on
        the same days (a pipeline's rerun of a day)."""
        return BatchLog.new(self.spool, pii=self.pii, pii_key=self.pii_key, ts=ts, key=key)

    # -- reading -------------------------------------------------------------------------
    def recent(self, request_id: str) -> tuple[str, int] | None:
        """(model, rows) of a request this process logged lately (no I/O)."""
        return self._recent.get(request_id)

    def lookup(self, request_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(model, rows) of each logged request among ``request_ids`` (blocking I/O): from
        memory, this host's spool, then the shared store's request index."""
        found = {r: self._recent[r] for r in request_ids if r in self._recent}
        missing = [r for r in request_ids if r not in found]
        if missing:  # this host's unshipped segments: a few seconds of traffic
            wanted = set(missing)
            for path in segment_paths(self.segments):
                for r in read_segment(path):
                    rid = r["request_id"]
                    if rid in wanted and r.get("status", 200) == 200:
                        rows = max(found.get(rid, ("", 0))[1], r["row"] + 1)
                        found[rid] = (r["model"], rows)
            missing = [r for r in missing if r not in found]
        if missing:
            if self._index is None:
                self._index = RequestIndex(self.store, self.feedback_days)
            found.update(self._index.find(missing))
        return found

    def read(
        self,
        model: str | None = None,
        *,
        errors: bool = False,
        since: datetime | None = None,
    ) -> pa.Table:
        """Every logged prediction, one row per input row (failed requests with ``errors``).

        ``since`` skips the day partitions that end before it (rows are not filtered by
        time: callers cut their window exactly).
        """
        table = read_stream(
            self.store, self.segments, PREDICTION_STREAM, prediction_parts, model=model, since=since
        )
        if errors or "status" not in table.column_names:
            return table
        answered = pc.fill_null(pc.equal(table["status"], 200), True)
        return table.filter(answered)

    def read_labels(self, model: str | None = None) -> pa.Table:
        """Labels given so far (every one: callers keep the newest per request and row)."""
        return read_stream(self.store, self.label_segments, LABEL_STREAM, label_parts, model=model)


def _ship_both(segments: Path, label_segments: Path, store: PartStore) -> int:
    """Ship a host's finished prediction and label segments (module level: a child runs it)."""
    moved = ship_folder(segments, store, prediction_parts)
    return moved + ship_folder(label_segments, store, label_parts)
