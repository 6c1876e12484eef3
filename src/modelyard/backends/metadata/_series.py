"""The newest monitoring values, read where the table lives.

Monitoring appends its results to ``monitor_metrics`` (``modelyard.monitoring.record_metrics``)
and the server turns the newest of them into Prometheus gauges. The read sits with the table,
so that serving, which sits above monitoring in DESIGN.md's pipeline, needs nothing of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from modelyard import _time
from modelyard.backends.metadata import _tables as t

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore


def latest_monitor_metrics(store: MetadataStore, subjects: list[str]) -> list[dict[str, Any]]:
    """The newest value of each (subject, version, variant, metric) among ``subjects``."""
    if not subjects:
        return []
    table = t.monitor_metrics
    keys = (table.c.subject, table.c.version, table.c.variant, table.c.metric)
    newest = (
        select(*keys, func.max(table.c.id).label("id"))
        .where(table.c.subject.in_(subjects))
        .group_by(*keys)
        .subquery()
    )
    query = select(table).join(newest, and_(table.c.id == newest.c.id))
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["at"] = _time.to_datetime(row["at"])
    return rows
