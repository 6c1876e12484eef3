"""Reading runs back: one run, metric histories, and search with filters and ordering.

A ``running`` run whose lease lapsed (its process died: ``_run.py``) is marked failed,
with the reason, before runs are read, so nobody sees a dead run as running forever.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, func, select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.errors import NotFoundError
from modelyard.tracking._filter import Clause, parse_filter, parse_order

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    name: str
    experiment: str
    status: str
    start_time: datetime
    end_time: datetime | None
    error: str | None
    seed: int | None
    git_commit: str | None
    environment: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float | None
    timestamp: datetime


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
}
LAPSED = (
    "the run's process died (killed, crashed or its host lost): it stopped renewing the "
    "run's lease, so the run was marked failed when the lease lapsed"
)
_KV_TABLES = {"params": t.params, "tags": t.tags, "metrics": t.latest_metrics}


def _clause_sql(clause: Clause) -> Any:
    op = _OPS[clause.op]
    if clause.kind == "attr":
        return op(t.runs.c[clause.key], clause.value)
    table = _KV_TABLES[clause.kind]
    # Correlate to runs only: the same table may also be the outer query's ordering.
    return (
        exists()
        .where(
            and_(
                table.c.run_id == t.runs.c.run_id,
                table.c.key == clause.key,
                op(table.c.value, clause.value),
            )
        )
        .correlate(t.runs)
    )


@dataclass(frozen=True)
class Experiment:
    name: str
    runs: int
    last_run: datetime | None


class Tracking:
    """Queries over runs (``ws.runs``)."""

    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata

    def get(self, run_id: str) -> RunInfo:
        self.fail_lapsed()
        runs = self._load([run_id])
        if not runs:
            raise NotFoundError(
                f"run '{run_id}' does not exist; list runs with 'modelyard runs list'"
            )
        return runs[0]

    def experiments(self) -> list[Experiment]:
        """Every experiment with its number of runs and its newest run's start, newest
        first (one GROUP BY, whatever the number of runs)."""
        r = t.runs.c
        newest = func.max(r.start_time)
        query = (
            select(r.experiment, func.count(), newest)
            .group_by(r.experiment)
            .order_by(newest.desc(), r.experiment)
        )
        with self._metadata.read() as conn:
            rows = conn.execute(query).all()
        return [Experiment(name, int(n), _time.to_datetime(last)) for name, n, last in rows]

    def search(
        self,
        filter: str | None = None,
        *,
        order_by: str | None = None,
        experiment: str | None = None,
        max_results: int = 100,
    ) -> list[RunInfo]:
        """Runs matching ``filter``, ordered by ``order_by`` (default: newest first)."""
        clauses = parse_filter(filter)
        order = parse_order(order_by)
        self.fail_lapsed()
        # A run deleted through the MLflow API is hidden until it is restored.
        conditions = [t.runs.c.deleted_at.is_(None), *(_clause_sql(c) for c in clauses)]
        if experiment is not None:
            conditions.append(t.runs.c.experiment == experiment)
        with self._metadata.read() as conn:
            if order is None or order[0] == "attr":
                col = t.runs.c[order[1]] if order else t.runs.c.start_time
                descending = order[2] if order else True
                stmt = (
                    select(t.runs.c.run_id)
                    .where(*conditions)
                    .order_by(col.desc() if descending else col.asc())
                    .limit(max_results)
                )
                ids = [row[0] for row in conn.execute(stmt)]
            else:
                ids = self._ids_by_value(conn, order, conditions, max_results)
        return self._load(ids)

    def fail_lapsed(self) -> list[str]:
        """Mark failed every running run whose lease lapsed; return their ids."""
        now = _time.now_us()
        lapsed = (
            t.runs.c.status == "running",
            t.runs.c.lease_until.is_not(None),
            t.runs.c.lease_until < now,
        )
        with self._metadata.read() as conn:  # the common case: nothing to write
            ids = [row[0] for row in conn.execute(select(t.runs.c.run_id).where(*lapsed))]
        if ids:
            with self._metadata.write() as conn:  # the same condition: a renewal wins
                conn.execute(
                    t.runs.update()
                    .where(t.runs.c.run_id.in_(ids), *lapsed)
                    .values(status="failed", end_time=t.runs.c.lease_until, error=LAPSED)
                )
        return ids

    def _ids_by_value(
        self, conn: Any, order: tuple[str, str, bool], conditions: list[Any], limit: int
    ) -> list[str]:
        """Run ids ordered by a metric or param; runs without it come last.

        The first query walks the (key, value) index of the ordering table in order
        and stops after ``limit`` matches, instead of sorting every run; only when it
        finds fewer does a second query add the runs that lack the value.
        """
        kind, key, descending = order
        table = _KV_TABLES[kind].alias("ordering")
        value = table.c.value
        first = (
            select(t.runs.c.run_id)
            .select_from(table.join(t.runs, table.c.run_id == t.runs.c.run_id))
            .where(table.c.key == key, value.is_not(None), *conditions)
            .order_by(value.desc() if descending else value.asc())
            .limit(limit)
        )
        ids = [row[0] for row in conn.execute(first)]
        if len(ids) < limit:
            has_value = (
                exists()
                .where(table.c.run_id == t.runs.c.run_id, table.c.key == key, value.is_not(None))
                .correlate(t.runs)
            )
            rest = (
                select(t.runs.c.run_id)
                .where(~has_value, *conditions)
                .order_by(t.runs.c.start_time.desc())
                .limit(limit - len(ids))
            )
            ids += [row[0] for row in conn.execute(rest)]
        return ids

    def history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every logged value of metric ``key`` in ``run_id``, by step."""
        stmt = (
            select(t.metrics.c.step, t.metrics.c.value, t.metrics.c.timestamp)
            .where(t.metrics.c.run_id == run_id, t.metrics.c.key == key)
            .order_by(t.metrics.c.step, t.metrics.c.timestamp, t.metrics.c.id)
        )
        with self._metadata.read() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            self.get(run_id)  # raises if the run is unknown
        return [MetricPoint(r.step, r.value, _time.to_datetime(r.timestamp)) for r in rows]

    def _load(self, run_ids: Sequence[str]) -> list[RunInfo]:
        """RunInfo for ``run_ids`` in that order, with five queries whatever their number."""
        if not run_ids:
            return []
        ids = list(run_ids)
        kv: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
        lists: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        with self._metadata.read() as conn:
            base = {
                r.run_id: r for r in conn.execute(select(t.runs).where(t.runs.c.run_id.in_(ids)))
            }
            for name, table in (("params", t.params), ("tags", t.tags)):
                for r in conn.execute(select(table).where(table.c.run_id.in_(ids))):
                    kv[r.run_id][name][r.key] = r.value
            stmt = select(t.latest_metrics).where(t.latest_metrics.c.run_id.in_(ids))
            for r in conn.execute(stmt):
                kv[r.run_id]["metrics"][r.key] = r.value
            for r in conn.execute(select(t.run_datasets).where(t.run_datasets.c.run_id.in_(ids))):
                lists[r.run_id]["datasets"].append(
                    {
                        "name": r.name,
                        "fingerprint": r.fingerprint,
                        "context": r.context,
                        "rows": r.num_rows,
                        "schema": r.schema,
                    }
                )
            stmt = select(t.run_artifacts).where(t.run_artifacts.c.run_id.in_(ids))
            for r in conn.execute(stmt):
                lists[r.run_id]["artifacts"].append(
                    {"path": r.path, "digest": r.digest, "size": r.size, "kind": r.kind}
                )
        out: list[RunInfo] = []
        for run_id in ids:
            found = base.get(run_id)
            if found is None:
                continue
            r = found
            out.append(
                RunInfo(
                    run_id=r.run_id,
                    name=r.name,
                    experiment=r.experiment,
                    status=r.status,
                    start_time=_time.to_datetime(r.start_time),
                    end_time=_time.to_datetime(r.end_time),
                    error=r.error,
                    seed=r.seed,
                    git_commit=r.git_commit,
                    environment=r.environment or {},
                    params=dict(kv[run_id]["params"]),
                    metrics=dict(kv[run_id]["metrics"]),
                    tags=dict(kv[run_id]["tags"]),
                    datasets=sorted(lists[run_id]["datasets"], key=lambda d: d["name"]),
                    artifacts=sorted(lists[run_id]["artifacts"], key=lambda d: d["path"]),
                )
            )
        return out
