"""Reading the log: the shared store's parts plus this host's spool, each row once.

The spool is read *before* the store is listed. A segment is removed only after its
parts are in the store, so a segment read from the spool either has its parts in the
listing that follows (and is then skipped: same key) or was not shipped yet (and is
read from the spool). Either way every row is read once, while shippers run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from modelyard.backends.predictions._layout import INDEX_STREAM, Stream, day_of
from modelyard.backends.predictions._parts import PartStore
from modelyard.backends.predictions._segments import read_segment, segment_id, segment_paths

Parts = Callable[[list[dict[str, Any]], str], dict[str, pa.Table]]


def spool_parts(spool: Path, to_parts: Parts, model: str | None = None) -> dict[str, pa.Table]:
    """The parts this host's unshipped segments will become, by key."""
    parts: dict[str, pa.Table] = {}
    for path in segment_paths(spool):
        records = read_segment(path)
        if model is not None:
            records = [r for r in records if r.get("model") == model]
        if records:
            parts.update(to_parts(records, segment_id(path)))
    return parts


def read_stream(
    store: PartStore,
    spool: Path,
    stream: Stream,
    to_parts: Parts,
    *,
    model: str | None = None,
    since: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Every row of ``stream`` (of ``model``), shipped or still in the spool.

    ``since`` skips the day partitions that end before it; rows are not filtered by
    time (callers cut their window exactly).
    """
    prefix = stream.model_prefix(model)
    first_day = None if since is None else since.astimezone(UTC).date().isoformat()

    def wanted(key: str) -> bool:
        return key.startswith(prefix) and (first_day is None or day_of(key) >= first_day)

    pending = {k: t for k, t in spool_parts(spool, to_parts, model).items() if wanted(k)}
    keys = [k for k in store.keys(prefix) if wanted(k)]
    found = store.read(keys, columns)
    tables = [found[k] for k in keys if k in found]
    shipped = set(keys)
    for key, table in pending.items():
        if key not in shipped:
            tables.append(table if columns is None else _select(table, columns))
    return concat(tables)


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    found = [t for t in tables if t.num_rows]
    if not found:
        return pa.table({})
    return pa.concat_tables(found, promote_options="permissive")


def _select(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    return table.select([c for c in columns if c in table.column_names])


class RequestIndex:
    """Request id -> (model, rows) for the requests shipped in the last ``days`` days.

    Index parts never change (compaction replaces them by new keys), so each is read
    once and kept as Arrow columns (about 50 bytes a request); a lookup of many ids is
    one vectorized ``is_in`` over them, not a scan of the predictions. ``days`` bounds
    that memory: labels for older requests come from a file (``monitor quality
    --labels``).
    """

    def __init__(self, store: PartStore, days: int = 30) -> None:
        self.store = store
        self.days = days
        self._parts: dict[str, pa.Table] = {}
        self._lock = threading.Lock()

    def find(self, request_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        first = (datetime.now(UTC) - timedelta(days=self.days)).date().isoformat()
        with self._lock:
            keys = [k for k in self.store.keys(INDEX_STREAM.prefix) if day_of(k) >= first]
            current = set(keys)
            for gone in [k for k in self._parts if k not in current]:
                del self._parts[gone]
            new = [k for k in keys if k not in self._parts]
            self._parts.update(self.store.read(new))
            tables = list(self._parts.values())
        return lookup(tables, request_ids)


def lookup(tables: Sequence[pa.Table], request_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """(model, rows) of each id found in index ``tables``."""
    if not request_ids:
        return {}
    found: dict[str, tuple[str, int]] = {}
    wanted = pa.array(list(request_ids), pa.string())
    for table in tables:
        if not table.num_rows:
            continue
        hits = table.filter(pc.is_in(table["request_id"], value_set=wanted))
        for rid, model, rows in zip(
            hits["request_id"].to_pylist(),
            hits["model"].to_pylist(),
            hits["rows"].to_pylist(),
            strict=True,
        ):
            prior = found.get(rid)
            found[rid] = (model, max(rows, prior[1]) if prior else rows)
    return found
