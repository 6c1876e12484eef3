"""What a new version takes from the run it was logged in: lineage, metrics and tags."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from modelyard.backends.metadata import tables as t
from modelyard.errors import NotFoundError


def run_facts(
    conn: Connection, run_id: str | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(lineage, the run's latest metrics, its tags), read in the registering transaction."""
    lineage: dict[str, Any] = {"run_id": run_id, "datasets": []}
    run_metrics: dict[str, Any] = {}
    run_tags: dict[str, str] = {}
    if run_id is not None:
        run = conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first()
        if run is None:
            raise NotFoundError(
                f"run {run_id!r} does not exist; log the model under a run of this "
                "workspace with ws.registry.log_model(run, model, input_example=...)"
            )
        lineage.update(git_commit=run.git_commit, seed=run.seed)
        lineage["datasets"] = [
            {
                "name": r.name,
                "fingerprint": r.fingerprint,
                "context": r.context,
                "rows": r.num_rows,
            }
            for r in conn.execute(select(t.run_datasets).where(t.run_datasets.c.run_id == run_id))
        ]
        run_metrics = {
            r.key: r.value
            for r in conn.execute(
                select(t.latest_metrics).where(t.latest_metrics.c.run_id == run_id)
            )
        }
        run_tags = {
            r.key: r.value for r in conn.execute(select(t.tags).where(t.tags.c.run_id == run_id))
        }
    return lineage, run_metrics, run_tags
