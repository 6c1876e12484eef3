"""Reading runs back: one run, metric histories, and search with filters and ordering."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, select

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
_KV_TABLES = {"params": t.params, "tags": t.tags, "metrics": t.latest_metrics}


def _clause_sql(clause: Clause) -> Any:
    op = _OPS[clause.op]
    if clause.kind == "attr":
        return op(t.runs.c[clause.key], clause.value)
    table = _KV_TABLES[clause.kind]
    return exists().where(
        and_(
            table.c.run_id == t.runs.c.run_id,
            table.c.key == clause.key,
            op(table.c.value, clause.value),
        )
    )


class Tracking:
    """Queries over runs (``ws.runs``)."""

    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata

    def get(self, run_id: str) -> RunInfo:
        runs = self._load([run_id])
        if not runs:
            raise NotFoundError(
                f"run '{run_id}' does not exist; list runs with 'modelyard runs list'"
            )
        return runs[0]

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
        stmt = select(t.runs.c.run_id)
        for clause in clauses:
            stmt = stmt.where(_clause_sql(clause))
        if experiment is not None:
            stmt = stmt.where(t.runs.c.experiment == experiment)
        if order is None:
            stmt = stmt.order_by(t.runs.c.start_time.desc())
        elif order[0] == "attr":
            col = t.runs.c[order[1]]
            stmt = stmt.order_by(col.desc() if order[2] else col.asc())
        else:
            table = _KV_TABLES[order[0]].alias("ordering")
            stmt = stmt.outerjoin(
                table, and_(table.c.run_id == t.runs.c.run_id, table.c.key == order[1])
            )
            col = table.c.value
            stmt = stmt.order_by(
                col.desc().nulls_last() if order[2] else col.asc().nulls_last(),
                t.runs.c.start_time.desc(),
            )
        stmt = stmt.limit(max_results)
        with self._metadata.read() as conn:
            ids = [row[0] for row in conn.execute(stmt)]
        return self._load(ids)

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
        return [MetricPoint(r.step, r.value, _time.to_datetime(r.timestamp)) for r in rows]  # type: ignore[arg-type]

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
                    start_time=_time.to_datetime(r.start_time),  # type: ignore[arg-type]
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
