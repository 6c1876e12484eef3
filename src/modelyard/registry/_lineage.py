"""What a new version takes from the run it was logged in: lineage, metrics and tags.

The lineage holds the run's git commit, seed and data sets (with fingerprints) and, where
the run built its training set with ``get_historical(..., run=run)``, the feature lineage
recorded then (``lineage["features"]``: per service, its version, each view's version,
source and data fingerprint). Copied here, it stays what the model was trained on after
the definitions, the files or the run's tags change.
"""

from __future__ import annotations

import json
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
        from modelyard.tracking import FEATURE_LINEAGE_TAG  # here: a server loads no tracking

        features = _feature_lineage(run_tags.pop(FEATURE_LINEAGE_TAG, None))
        if features:
            lineage["features"] = features
    return lineage, run_metrics, run_tags


def _feature_lineage(text: str | None) -> list[dict[str, Any]]:
    """The feature lineage a run recorded (``Run.log_feature_lineage``); a tag that is not
    one (set by hand) is left out rather than failing the registration."""
    if not text:
        return []
    try:
        found = json.loads(text)
    except ValueError:
        return []
    if not isinstance(found, list):
        return []
    return [entry for entry in found if isinstance(entry, dict) and "views" in entry]
