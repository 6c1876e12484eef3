"""Backfill: recompute a view from its source, partition by partition, checking each.

A partition that passes every check becomes one Parquet file under
``offline/backfill/<view>/v<version>/`` (written atomically), and the time range it
covers is added to ``coverage.json`` beside it. Offline reads then take the view's rows
for covered times from these files instead of the source. A partition that fails a
check is *rejected*: it writes nothing, its range is recorded as rejected so that no
read (training set, materialization) takes the source's rows for it, and the run
reports every check it failed, with sample rows; the other partitions still land.
Running the same backfill again (after fixing the source) skips the covered partitions
and retries the rejected ones, so the range completes.

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
from modelyard.features._checks import CheckFailure, check_partition
from modelyard.features._sources import literal, quote

if TYPE_CHECKING:
    from modelyard.backends.executors import Executor
    from modelyard.features._definitions import FeatureView

Range = tuple[datetime, datetime]
MAX_PARTITIONS = 10_000  # a guard against a mistyped year (1900 to now, one a day)


@dataclass
class PartitionResult:
    start: datetime
    end: datetime
    rows: int
    status: str  # "written", "skipped" (already covered) or "rejected"
    failures: list[CheckFailure] = field(default_factory=list)  # every check it failed

    @property
    def failure(self) -> CheckFailure | None:
        """The first check the partition failed, or None."""
        return self.failures[0] if self.failures else None


@dataclass
class BackfillReport:
    view: str
    version: int
    partitions: list[PartitionResult] = field(default_factory=list)

    @property
    def rejected(self) -> list[PartitionResult]:
        return [p for p in self.partitions if p.status == "rejected"]

    @property
    def failed(self) -> PartitionResult | None:
        """The first rejected partition, or None."""
        return next(iter(self.rejected), None)

    @property
    def ok(self) -> bool:
        return not self.rejected


def backfill_folder(offline_root: Path, view: str, version: int) -> Path:
    return offline_root / "backfill" / view / f"v{version}"


def _record(folder: Path) -> dict[str, list[Range]]:
    path = folder / "coverage.json"
    body = json.loads(path.read_text()) if path.is_file() else {}
    return {
        key: [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in body.get(key, [])]
        for key in ("ranges", "rejected")
    }


def read_coverage(folder: Path) -> list[Range]:
    """The time ranges whose partitions passed every check (read from their files)."""
    return _record(folder)["ranges"]


def read_rejected(folder: Path) -> list[Range]:
    """The partitions the last backfill of them rejected (read from neither)."""
    return _record(folder)["rejected"]


def _merge(ranges: list[Range]) -> list[Range]:
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _write_coverage(folder: Path, ranges: list[Range], rejected: list[Range]) -> None:
    body = {
        "ranges": [[a.isoformat(), b.isoformat()] for a, b in _merge(ranges)],
        "rejected": [[a.isoformat(), b.isoformat()] for a, b in sorted(rejected)],
    }
    atomic_write_text(folder / "coverage.json", json.dumps(body, indent=2))


def _settle(folder: Path, part: Range, *, passed: bool) -> None:
    """Record ``part`` as covered (its file is in place) or as rejected."""
    record = _record(folder)
    covered = list(record["ranges"])
    # A rejection inside ``part`` (a run with smaller partitions) is settled by it too.
    rejected = [r for r in record["rejected"] if not (part[0] <= r[0] and r[1] <= part[1])]
    if passed:
        covered.append(part)
    else:
        rejected.append(part)
    _write_coverage(folder, covered, rejected)


def covered_sql(view: FeatureView, folder: Path) -> tuple[str | None, str] | None:
    """(rows from backfilled files or None, condition excluding covered and rejected
    times from the source), or None where no backfill covered or rejected anything."""
    record = _record(folder)
    ranges, rejected = record["ranges"], record["rejected"]
    if not ranges and not rejected:
        return None
    ts = quote(view.source.timestamp_field)
    inside = " OR ".join(
        f"({ts} >= {_instant(a)} AND {ts} < {_instant(b)})" for a, b in [*ranges, *rejected]
    )
    files = None
    if ranges:
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


def _compute(part: _Partition) -> tuple[int, list[CheckFailure]]:
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
    failures = check_partition(part.view, table, part.start, part.end)
    if not failures:
        pq.write_table(table, part.staged)
    return table.num_rows, failures


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
    place and records its coverage, oldest first. A partition that fails a check is
    recorded as rejected (no file) and the run goes on with the next.
    """
    start, end = _time.aware(start, "backfill start"), _time.aware(end, "backfill end")
    if start >= end:
        raise InvalidInputError(f"backfill start {start} must be before end {end}")
    if partition <= timedelta(0):
        raise InvalidInputError("the backfill partition size must be positive")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    now = datetime.now(UTC)
    if end > now:
        # A partition covered now would hide the source rows that arrive for it later.
        raise InvalidInputError(
            f"backfill end {end.isoformat()} is in the future; backfill only what has "
            f"happened: end at {now:%Y-%m-%dT%H:%M}Z or earlier"
        )
    if (end - start) / partition > MAX_PARTITIONS:
        raise InvalidInputError(
            f"backfill of {start:%Y-%m-%d} to {end:%Y-%m-%d} is {(end - start) / partition:.0f} "
            f"partitions, more than {MAX_PARTITIONS}; give a shorter range or larger partitions"
        )
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
                rows, failures = settled.get()
                if failures:
                    result = PartitionResult(p_start, p_end, rows, "rejected", failures)
                else:
                    Path(part.staged).replace(folder / f"{_name(p_start, p_end)}.parquet")
                    result = PartitionResult(p_start, p_end, rows, "written")
                _settle(folder, (p_start, p_end), passed=not failures)
            report.partitions.append(result)
            if progress is not None:
                progress(result)
    finally:
        results.close()  # an error or Ctrl-C: stop the partitions not settled yet
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
            "failures": [
                {"check": f.check, "message": f.message, "samples": f.samples[:3]}
                for f in p.failures
            ],
        }
        for p in report.partitions
    ]
    body = {
        "at": datetime.now(UTC).isoformat(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "partitions": parts,
    }
    atomic_write_text(folder / "last_run.json", json.dumps(body, indent=2, default=str))


def backfill_status(folder: Path) -> dict[str, Any]:
    """What backfills left for a view version: ``covered`` ranges (every check passed),
    ``rejected`` ranges (read from nowhere until a backfill passes them) and ``last_run``
    (its partitions with status and every failing check; None before any run)."""
    path = folder / "last_run.json"
    last = json.loads(path.read_text()) if path.is_file() else None
    record = _record(folder)
    return {"covered": record["ranges"], "rejected": record["rejected"], "last_run": last}


def _name(start: datetime, end: datetime) -> str:
    return f"{start.strftime('%Y%m%dT%H%M%S')}-{end.strftime('%Y%m%dT%H%M%S')}"
