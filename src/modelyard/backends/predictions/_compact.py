"""Compaction and retention of the shared store: fewer, larger parts; old days dropped.

Shipping writes one small part per segment (a few seconds of one replica's traffic),
so a busy day has thousands. Compaction merges a partition's small parts (one model's
day of one stream) into parts of up to ``target_rows`` rows, named
``merged-ROWS-RAND``; a merged part that is already at least half full is left alone,
so a partition is not rewritten every run. A part shipped from a segment is merged only
after ``min_age_s``: until its segment is surely gone from its spool, readers tell the
two apart by the part's name (see ``_read.py``).

Retention deletes every part of a day older than ``keep_days`` days.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelyard.backends.predictions._layout import day_of
from modelyard.backends.predictions._parts import PartStore
from modelyard.backends.predictions._read import concat
from modelyard.errors import InvalidInputError

TARGET_ROWS = 1_000_000
MIN_AGE_S = 3600.0


@dataclass(frozen=True)
class Maintenance:
    """What one compaction and retention pass did."""

    records_shipped: int = 0
    parts_merged: int = 0
    parts_written: int = 0
    parts_deleted: int = 0
    days_deleted: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "days_deleted": list(self.days_deleted)}


def _merged_rows(name: str) -> int | None:
    if not name.startswith("merged-"):
        return None
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return None


def _old_enough(name: str, min_age_s: float, now_ns: int) -> bool:
    """A segment's part waits ``min_age_s`` (its name starts with its open time)."""
    if not name.startswith("seg-"):
        return True
    try:
        opened = int(name.split("-")[1])
    except (IndexError, ValueError):
        return True  # a segment named by an older release: long shipped
    if opened < 10**17:  # 'seg-PID-NS' of the first release: PID first, also long shipped
        return True
    return now_ns - opened >= min_age_s * 1e9


def compact(
    store: PartStore,
    *,
    target_rows: int = TARGET_ROWS,
    min_age_s: float = MIN_AGE_S,
) -> Maintenance:
    """Merge each partition's small parts into parts of up to ``target_rows`` rows."""
    now_ns = time.time_ns()
    partitions: dict[str, list[str]] = defaultdict(list)
    for key in store.keys(""):
        folder, _, file = key.rpartition("/")
        name = file.removesuffix(".parquet")
        rows = _merged_rows(name)
        if rows is not None and rows >= target_rows // 2:
            continue
        if _old_enough(name, min_age_s, now_ns):
            partitions[folder].append(key)
    merged = written = 0
    for folder, keys in sorted(partitions.items()):
        if len(keys) < 2:
            continue
        found = store.read(keys)
        table = concat(found[k] for k in keys if k in found)
        for start in range(0, table.num_rows, target_rows):
            piece = table.slice(start, target_rows)
            store.put(f"{folder}/merged-{piece.num_rows}-{secrets.token_hex(8)}.parquet", piece)
            written += 1
        store.delete(list(found))  # after the merged parts are in: a crash doubles, not loses
        merged += len(found)
    return Maintenance(parts_merged=merged, parts_written=written)


def retain(store: PartStore, keep_days: int, *, now: datetime | None = None) -> Maintenance:
    """Delete every part of the days before the last ``keep_days`` (UTC) days."""
    if isinstance(keep_days, bool) or not isinstance(keep_days, int) or keep_days < 1:
        raise InvalidInputError(
            f"keep_days = {keep_days!r}: expected a whole number of days, 1 or more"
        )
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    first_kept = (today - timedelta(days=keep_days - 1)).isoformat()
    old = [k for k in store.keys("") if "" < day_of(k) < first_kept]
    store.delete(old)
    days = tuple(sorted({day_of(k) for k in old}))
    return Maintenance(parts_deleted=len(old), days_deleted=days)
