"""MLflow's run records beside params, metrics and tags: a metric's history, dataset
inputs, output models and MLflow 2's logged-model history tag."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from modelyard.backends.metadata import tables as t
from modelyard.server._endpoints import V2, Call, endpoint, json_number, kv_dict
from modelyard.server._errors import invalid
from modelyard.server._paging import page, page_token
from modelyard.server._runs import check_key, run_id_arg, run_row


@endpoint("GET", f"{V2}/metrics/get-history", "read")
def get_history(call: Call) -> dict[str, Any]:
    run_id, key = run_id_arg(call), call.args.text("metric_key")
    limit = call.args.integer("max_results", 25_000, low=1)
    m = t.metrics.c

    offset = page_token(call.args.get("page_token"))
    with call.stores.metadata.read() as conn:
        run_row(conn, run_id)
        rows = conn.execute(
            select(m.value, m.timestamp, m.step)
            .where(m.run_id == run_id, m.key == key)
            .order_by(m.step, m.timestamp, m.id)
            .offset(offset)
            .limit(limit + 1)
        ).all()
    points = [
        {
            "key": key,
            "value": json_number(r.value),
            "timestamp": r.timestamp // 1000,
            "step": r.step,
        }
        for r in rows
    ]
    return page("metrics", points, offset, limit)


# -- inputs and outputs ----------------------------------------------------------------------
@endpoint("POST", f"{V2}/runs/log-inputs", "track")
def log_inputs(call: Call) -> dict[str, Any]:
    run_id = run_id_arg(call)
    rows = []
    for item in call.args.items("datasets"):
        dataset = item.get("dataset") if isinstance(item, dict) else None
        if not isinstance(dataset, dict) or not dataset.get("name") or not dataset.get("digest"):
            raise invalid(f"each dataset input needs a dataset with name and digest; got {item!r}")
        tags = kv_dict(item.get("tags") or [], "dataset tag")
        rows.append(
            {
                "run_id": run_id,
                "name": check_key(str(dataset["name"]), "dataset"),
                "fingerprint": str(dataset["digest"])[:80],
                "context": tags.get("mlflow.data.context", "")[:50],
                "num_rows": None,
                "schema": {"mlflow": {"dataset": dataset, "tags": item.get("tags") or []}},
            }
        )
    metadata = call.stores.metadata
    with metadata.write() as conn:
        run_row(conn, run_id, active=True)
        by_name = {r["name"]: r for r in rows}  # one row per name: the last one sent
        metadata.upsert(
            conn,
            t.run_datasets,
            list(by_name.values()),
            keys=("run_id", "name"),
            update=("fingerprint", "context", "num_rows", "schema"),
        )
    return {}


@endpoint("POST", f"{V2}/runs/outputs", "track")
def log_outputs(call: Call) -> dict[str, Any]:
    """A run's output models are the logged models it is the source of (``load_runs``);
    this links one made elsewhere to the run."""
    run_id = run_id_arg(call)
    ids = [str(m.get("model_id")) for m in call.args.items("models") if isinstance(m, dict)]
    with call.stores.metadata.write() as conn:
        run_row(conn, run_id, active=True)
        if ids:
            lg = t.logged_models.c
            conn.execute(
                t.logged_models.update()
                .where(lg.model_id.in_(ids), lg.run_id.is_(None))
                .values(run_id=run_id)
            )
    return {}


@endpoint("POST", f"{V2}/runs/log-model", "track")
def log_model_history(call: Call) -> dict[str, Any]:
    """MLflow 2 clients record each logged model's MLmodel in a run tag."""
    run_id = run_id_arg(call)
    model = call.args.get("model_json")
    if not isinstance(model, str):
        raise invalid("Missing value for required parameter 'model_json'.")
    with call.stores.metadata.write() as conn:
        run_row(conn, run_id, active=True)
        found = conn.execute(
            select(t.tags.c.value).where(
                t.tags.c.run_id == run_id, t.tags.c.key == "mlflow.log-model.history"
            )
        ).scalar()
        history = json.loads(found) if found else []
        history.append(json.loads(model))
        call.stores.metadata.upsert(
            conn,
            t.tags,
            [{"run_id": run_id, "key": "mlflow.log-model.history", "value": json.dumps(history)}],
            keys=("run_id", "key"),
            update=("value",),
        )
    return {}
