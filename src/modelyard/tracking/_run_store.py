"""Where a run's rows go: the metadata database (``SqlRunStore``), or the team server
(``modelyard.remote``'s store, which sends the same calls over HTTP and has the server
make them here).

Each method is one transaction, named for what the run does; ``Run`` keeps the buffer,
the lease thread and the checks, so a run behaves alike whichever store it writes to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from modelyard import _time
from modelyard.backends.metadata import tables as t

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore


def _latest_wins(table: Any, excluded: Any) -> Any:
    """Upsert condition: keep the value with the greater (step, timestamp)."""
    return (excluded.step > table.c.step) | (
        (excluded.step == table.c.step) & (excluded.timestamp >= table.c.timestamp)
    )


def store_metrics(metadata: MetadataStore, conn: Any, rows: list[dict[str, Any]]) -> None:
    """Append metric rows (run_id, key, value, step, timestamp in µs) to the history and
    keep each (run, key)'s latest value (the greatest step, then timestamp) beside it."""
    conn.execute(t.metrics.insert(), rows)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        seen = latest.get((row["run_id"], row["key"]))
        if seen is None or (row["step"], row["timestamp"]) >= (seen["step"], seen["timestamp"]):
            latest[(row["run_id"], row["key"])] = row
    metadata.upsert(
        conn,
        t.latest_metrics,
        list(latest.values()),
        keys=("run_id", "key"),
        update=("value", "step", "timestamp"),
        where=_latest_wins,
    )


def ensure_experiment(metadata: MetadataStore, conn: Any, name: str) -> None:
    """Give experiment ``name`` its row (and so its id) unless it has one."""
    now = _time.now_us()
    row = {
        "name": name,
        "lifecycle_stage": "active",
        "tags": {},
        "created_at": now,
        "updated_at": now,
    }
    metadata.insert_missing(conn, t.experiments, [row], keys=("name",))


class RunStore(Protocol):
    def start(
        self, row: Mapping[str, Any], params: Mapping[str, str], tags: Mapping[str, str]
    ) -> None: ...
    def add_params(self, run_id: str, params: Mapping[str, str]) -> None: ...
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...
    def write_metrics(self, rows: list[dict[str, Any]]) -> None: ...
    def renew(self, run_id: str, lease_until: int) -> None: ...
    def end(self, run_id: str, rows: list[dict[str, Any]], values: Mapping[str, Any]) -> None: ...
    def record_artifact(self, row: Mapping[str, Any]) -> None: ...
    def log_dataset(self, row: Mapping[str, Any]) -> None: ...


class SqlRunStore:
    """A run's writes, straight to the metadata database."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def start(
        self, row: Mapping[str, Any], params: Mapping[str, str], tags: Mapping[str, str]
    ) -> None:
        run_id = row["run_id"]
        with self.metadata.write() as conn:
            ensure_experiment(self.metadata, conn, row["experiment"])
            conn.execute(t.runs.insert(), dict(row))
            if params:
                conn.execute(
                    t.params.insert(),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in params.items()],
                )
            if tags:
                conn.execute(
                    t.tags.insert(),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()],
                )

    def add_params(self, run_id: str, params: Mapping[str, str]) -> None:
        with self.metadata.write() as conn:
            conn.execute(
                t.params.insert(),
                [{"run_id": run_id, "key": k, "value": v} for k, v in params.items()],
            )

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        rows = [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
        with self.metadata.write() as conn:
            self.metadata.upsert(conn, t.tags, rows, keys=("run_id", "key"), update=("value",))

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        with self.metadata.write() as conn:
            store_metrics(self.metadata, conn, rows)

    def renew(self, run_id: str, lease_until: int) -> None:
        with self.metadata.write() as conn:
            conn.execute(
                t.runs.update()
                .where(t.runs.c.run_id == run_id, t.runs.c.status == "running")
                .values(lease_until=lease_until)
            )

    def end(self, run_id: str, rows: list[dict[str, Any]], values: Mapping[str, Any]) -> None:
        """Store the last metrics and the final status together."""
        with self.metadata.write() as conn:
            if rows:
                store_metrics(self.metadata, conn, rows)
            conn.execute(t.runs.update().where(t.runs.c.run_id == run_id).values(**values))

    def record_artifact(self, row: Mapping[str, Any]) -> None:
        with self.metadata.write() as conn:
            self.metadata.upsert(
                conn,
                t.run_artifacts,
                [dict(row)],
                keys=("run_id", "path"),
                update=("digest", "size", "kind"),
            )

    def log_dataset(self, row: Mapping[str, Any]) -> None:
        with self.metadata.write() as conn:
            self.metadata.upsert(
                conn,
                t.run_datasets,
                [dict(row)],
                keys=("run_id", "name"),
                update=("fingerprint", "context", "num_rows", "schema"),
            )
