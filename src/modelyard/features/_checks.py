"""Data-quality checks a feature view declares; backfill runs them on every partition.

Each check is SQL over the partition (a DuckDB relation named ``part``) that yields the
offending rows, or one row of statistics, so a failure can show samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb

from modelyard.errors import InvalidInputError
from modelyard.features._sources import quote

if TYPE_CHECKING:
    from modelyard.features._definitions import FeatureView

SAMPLES = 5


@dataclass(frozen=True)
class CheckFailure:
    check: str
    message: str
    samples: list[dict[str, Any]]

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass(frozen=True)
class Range:
    """Every non-null value of ``feature`` lies in [min, max]."""

    feature: str
    min: float | None = None
    max: float | None = None

    def run(
        self, con: Any, view: FeatureView, start: datetime, end: datetime
    ) -> CheckFailure | None:
        col = quote(self.feature)
        bad = []
        if self.min is not None:
            bad.append(f"{col} < {self.min!r}")
        if self.max is not None:
            bad.append(f"{col} > {self.max!r}")
        if not bad:
            return None
        return _rows_failure(
            con,
            f"SELECT * FROM part WHERE {' OR '.join(bad)}",
            f"range({self.feature})",
            f"values of '{self.feature}' outside [{self.min}, {self.max}]",
        )


@dataclass(frozen=True)
class NullRate:
    """At most ``max`` (a fraction) of ``feature`` is null."""

    feature: str
    max: float = 0.0

    def run(
        self, con: Any, view: FeatureView, start: datetime, end: datetime
    ) -> CheckFailure | None:
        col = quote(self.feature)
        total, nulls = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {col} IS NULL) FROM part"
        ).fetchall()[0]
        if total == 0 or nulls / total <= self.max:
            return None
        return _rows_failure(
            con,
            f"SELECT * FROM part WHERE {col} IS NULL",
            f"null_rate({self.feature})",
            f"{nulls / total:.1%} of '{self.feature}' is null (at most {self.max:.1%} allowed)",
        )


@dataclass(frozen=True)
class UniqueKeys:
    """No two rows share join keys and event time."""

    def run(
        self, con: Any, view: FeatureView, start: datetime, end: datetime
    ) -> CheckFailure | None:
        cols = ", ".join(quote(c) for c in [*view.entity.key_names, view.source.timestamp_field])
        return _rows_failure(
            con,
            f"SELECT {cols}, count(*) AS copies FROM part GROUP BY {cols} HAVING count(*) > 1",
            "unique_keys",
            "rows repeat the same join keys and event time",
        )


@dataclass(frozen=True)
class Freshness:
    """The newest event time is at most ``max_age`` before the partition's end."""

    max_age: timedelta

    def run(
        self, con: Any, view: FeatureView, start: datetime, end: datetime
    ) -> CheckFailure | None:
        newest = con.execute(
            f"SELECT max({quote(view.source.timestamp_field)}) FROM part"
        ).fetchall()[0][0]
        if newest is not None and end - newest <= self.max_age:
            return None
        return CheckFailure(
            "freshness",
            f"newest event time {newest} is more than {self.max_age} before {end.isoformat()}",
            [],
        )


@dataclass(frozen=True)
class RowCount:
    """The partition holds between ``min`` and ``max`` rows."""

    min: int | None = None
    max: int | None = None

    def run(
        self, con: Any, view: FeatureView, start: datetime, end: datetime
    ) -> CheckFailure | None:
        count = con.execute("SELECT count(*) FROM part").fetchall()[0][0]
        if (self.min is None or count >= self.min) and (self.max is None or count <= self.max):
            return None
        return CheckFailure(
            "row_count", f"{count} rows, expected between {self.min} and {self.max}", []
        )


Check = Range | NullRate | UniqueKeys | Freshness | RowCount
_KINDS: dict[str, type] = {
    "range": Range,
    "null_rate": NullRate,
    "unique_keys": UniqueKeys,
    "freshness": Freshness,
    "row_count": RowCount,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def _rows_failure(con: Any, sql: str, check: str, message: str) -> CheckFailure | None:
    relation = con.sql(f"{sql} LIMIT {SAMPLES}")
    names = relation.columns
    rows = relation.fetchall()
    if not rows:
        return None
    return CheckFailure(check, message, [dict(zip(names, r, strict=True)) for r in rows])


def check_spec(check: Check) -> dict[str, Any]:
    body = asdict(check)
    if isinstance(check, Freshness):
        body["max_age"] = check.max_age.total_seconds()
    return {"kind": _NAMES[type(check)], **body}


def check_from_spec(spec: Mapping[str, Any]) -> Check:
    body = dict(spec)
    kind = body.pop("kind", None)
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise InvalidInputError(f"unknown check kind {kind!r}; use one of {', '.join(_KINDS)}")
    if cls is Freshness:
        body["max_age"] = timedelta(seconds=body["max_age"])
    return cls(**body)  # type: ignore[no-any-return]


def validate_checks(view: FeatureView) -> None:
    for check in view.checks:
        feature = getattr(check, "feature", None)
        if feature is not None:
            view.feature(feature)  # raises with the nearest name


def run_checks(
    view: FeatureView, partition: Any, start: datetime, end: datetime
) -> CheckFailure | None:
    """The first failing check on ``partition`` (an Arrow table), or None."""
    failures = check_partition(view, partition, start, end, first_only=True)
    return failures[0] if failures else None


def check_partition(
    view: FeatureView, partition: Any, start: datetime, end: datetime, *, first_only: bool = False
) -> list[CheckFailure]:
    """Every check ``partition`` (an Arrow table) fails, in declared order; [] if it passes."""
    failures: list[CheckFailure] = []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("part", partition)
        for check in view.checks:
            failure = check.run(con, view, start, end)
            if failure is not None:
                failures.append(failure)
                if first_only:
                    break
    finally:
        con.close()
    return failures
