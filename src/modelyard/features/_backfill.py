"""Backfill: recompute a view from its source, partition by partition, checking each.

A partition that passes every check becomes one Parquet file under
``offline/backfill/<view>/v<version>/`` (written atomically), and the time range it
covers is added to ``coverage.json`` beside it. Offline reads then take the view's rows
for covered times from these files instead of the source. A partition that fails a
check writes nothing and stops the run with the failure and sample rows; running the
same backfill again skips the covered partitions, so it resumes where it stopped.

The coverage record lives with the data (not in the metadata database) so that the
Parquet folder alone says what it holds; it is rewritten whole, by rename.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow.parquet as pq

from modelyard import _time
from modelyard._files import atomic_write_text
from modelyard.errors import InvalidInputError
from modelyard.features._checks import CheckFailure, run_checks
from modelyard.features._sources import literal, quote

if TYPE_CHECKING:
    from modelyard.backends.executors import Executor
    from modelyard.features._definitions import FeatureView

Range = tuple[datetime, datetime]


@dataclass
class PartitionResult:
    start: datetime
    end: datetime
    rows: int
    status: str  # "written", "skipped" (already covered) or "failed"
    failure: CheckFailure | None = None


@dataclass
class BackfillReport:
    view: str
    version: int
    partitions: list[PartitionResult] = field(default_factory=list)

    @property
    def failed(self) -> PartitionResult | None:
        return next((p for p in self.partitions if p.status == "failed"), None)

    @property
    def ok(self) -> bool:
        return self.failed is None


def backfill_folder(offline_root: Path, view: str, version: int) -> Path:
    return offline_root / "backfill" / view / f"v{version}"


def read_coverage(folder: Path) -> list[Range]:
    path = folder / "coverage.json"
    if not path.is_file():
        return []
    return [
        (datetime.fromisoformat(a), datetime.fromisoformat(b))
        for a, b in json.loads(path.read_text())["ranges"]
    ]


def _merge(ranges: list[Range]) -> list[Range]:
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _write_coverage(folder: Path, ranges: list[Range]) -> None:
    body = {"ranges": [[a.isoformat(), b.isoformat()] for a, b in _merge(ranges)]}
    atomic_write_text(folder / "coverage.json", json.dumps(body, indent=2))


def covered_sql(view: FeatureView, folder: Path) -> tuple[str, str] | None:
    """(rows from backfilled files, condition excluding covered times) or None."""
    ranges = read_coverage(folder)
    if not ranges:
        return None
    ts = quote(view.source.timestamp_field)
    inside = " OR ".join(f"({ts} >= {_instant(a)} AND {ts} < {_instant(b)})" for a, b in ranges)
    files = (
        "SELECT * EXCLUDE (filename, file_row_number), filename AS __file, "
        "file_row_number AS __pos, 0 AS __tier FROM read_parquet("
        f"{literal(str(folder / '*.parquet'))}, filename = true, file_row_number = true)"
    )
    return files, f"NOT ({inside})"


def _instant(value: datetime) -> str:
    return f"TIMESTAMPTZ {literal(value.isoformat())}"


def partitions(start: datetime, end: datetime, size: timedelta) -> list[Range]:
    out: list[Range] = []
    cursor = start
    while cursor < end:
        out.append((cursor, min(cursor + size, end)))
        cursor += size
    return out


@dataclass(frozen=True)
class _Partition:
    """One partition's work: the view's rows for [start, end), checked, staged at ``staged``."""

    view: FeatureView
    start: datetime
    end: datetime
    staged: str


def _compute(part: _Partition) -> tuple[int, CheckFailure | None]:
    """A task: read and check one partition; stage its file only when every check passes."""
    ts = quote(part.view.source.timestamp_field)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.sql(
            f"SELECT * EXCLUDE (__file, __pos) FROM ({part.view.source.sql()}) "
            f"WHERE {ts} >= TIMESTAMPTZ {literal(part.start.isoformat())} "
            f"AND {ts} < TIMESTAMPTZ {literal(part.end.isoformat())} "
            "ORDER BY __file, __pos"
        )
        fetch = getattr(rows, "to_arrow_table", None) or rows.arrow
        table = fetch()
    finally:
        con.close()
    failure = run_checks(part.view, table, part.start, part.end)
    if failure is None:
        pq.write_table(table, part.staged)
    return table.num_rows, failure


def backfill_view(
    view: FeatureView,
    version: int,
    offline_root: Path,
    start: datetime,
    end: datetime,
    *,
    executor: Executor,
    partition: timedelta = timedelta(days=1),
    progress: Callable[[PartitionResult], None] | None = None,
) -> BackfillReport:
    """Compute the uncovered partitions on ``executor``; publish them here, in time order.

    Each task stages its file under a hidden name; only this process renames it into
    place and records its coverage, oldest first, so a failed partition stops the run
    with every earlier one published and no later one visible.
    """
    start, end = _time.aware(start, "backfill start"), _time.aware(end, "backfill end")
    if start >= end:
        raise InvalidInputError(f"backfill start {start} must be before end {end}")
    if partition <= timedelta(0):
        raise InvalidInputError("the backfill partition size must be positive")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    folder = backfill_folder(offline_root, view.name, version)
    folder.mkdir(parents=True, exist_ok=True)
    report = BackfillReport(view.name, version)
    covered = read_coverage(folder)
    work = [
        _Partition(view, a, b, str(folder / f".{_name(a, b)}.{uuid.uuid4().hex}.tmp"))
        for a, b in partitions(start, end, partition)
        if not any(c <= a and b <= d for c, d in covered)
    ]
    todo = {p.start for p in work}
    results = executor.map(_compute, work, names=[f"partition {p.start.isoformat()}" for p in work])
    computed = zip(work, results, strict=True)
    try:
        for p_start, p_end in partitions(start, end, partition):
            if p_start not in todo:
                result = PartitionResult(p_start, p_end, 0, "skipped")
            else:
                part, settled = next(computed)
                rows, failure = settled.get()
                if failure is not None:
                    result = PartitionResult(p_start, p_end, rows, "failed", failure)
                else:
                    Path(part.staged).replace(folder / f"{_name(p_start, p_end)}.parquet")
                    _write_coverage(folder, [*read_coverage(folder), (p_start, p_end)])
                    result = PartitionResult(p_start, p_end, rows, "written")
            report.partitions.append(result)
            if progress is not None:
                progress(result)
            if result.status == "failed":
                break
    finally:
        results.close()  # stops the partitions after a failure before their files go
        for part in work:
            Path(part.staged).unlink(missing_ok=True)
    _write_last_run(folder, start, end, report)
    return report


def _write_last_run(folder: Path, start: datetime, end: datetime, report: BackfillReport) -> None:
    """The run's data-quality results, per partition (the dashboard shows the last run)."""
    parts = [
        {
            "start": p.start.isoformat(),
            "end": p.end.isoformat(),
            "rows": p.rows,
            "status": p.status,
            "check": p.failure.check if p.failure else None,
            "message": p.failure.message if p.failure else None,
        }
        for p in report.partitions
    ]
    body = {
        "at": datetime.now(UTC).isoformat(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "partitions": parts,
    }
    atomic_write_text(folder / "last_run.json", json.dumps(body, indent=2))


def backfill_status(folder: Path) -> dict[str, Any]:
    """What backfills left for a view version: ``covered`` ranges (every check passed) and
    ``last_run`` (its partitions with status and the failing check; None before any run)."""
    path = folder / "last_run.json"
    last = json.loads(path.read_text()) if path.is_file() else None
    return {"covered": read_coverage(folder), "last_run": last}


def _name(start: datetime, end: datetime) -> str:
    return f"{start.strftime('%Y%m%dT%H%M%S')}-{end.strftime('%Y%m%dT%H%M%S')}"
