"""MLflow's run endpoints over modelyard's runs: create, get, update, delete and restore,
params, metrics (one, a batch, the history), tags, inputs and outputs.

A run an MLflow client creates is an ordinary modelyard run (``modelyard runs show``): the
same rows, its status in modelyard's lower case, times in microseconds (MLflow's
milliseconds times 1,000), a NaN metric as NULL. A batch is one transaction, so it is
stored whole or not at all.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.server import _experiments
from modelyard.server._endpoints import (
    V2,
    Call,
    Stores,
    endpoint,
    finite_or_none,
    in_range,
    json_number,
    kv_dict,
    ms,
)
from modelyard.server._errors import MlflowError, invalid, missing
from modelyard.tracking import store_metrics

STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
RUN_NAME_TAG = "mlflow.runName"
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_BATCH = {"metrics": 1000, "params": 100, "tags": 100}
_R = t.runs.c


def run_id_arg(call: Call) -> str:
    return call.args.text("run_id", "run_uuid")


def run_row(conn: Connection, run_id: str, *, active: bool = False) -> Any:
    row = conn.execute(
        select(_R.run_id, _R.experiment, _R.name, _R.deleted_at).where(_R.run_id == run_id)
    ).first()
    if row is None:
        raise missing(f"Run with id={run_id} not found")
    if active and row.deleted_at is not None:
        raise MlflowError(
            "INVALID_STATE",
            f"The run {run_id} must be in the 'active' state. Current state is deleted.",
        )
    return row


def check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise invalid(f"{what} key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY:
        raise invalid(f"{what} key '{key[:40]}…' has {len(key)} characters; the limit is {MAX_KEY}")
    return key


def _value(value: Any, what: str, key: str, limit: int) -> str:
    text = "" if value is None else str(value)
    if len(text) > limit:
        raise invalid(f"{what} '{key}' has a value of {len(text)} characters; the limit is {limit}")
    return text


# -- reading runs back in MLflow's shape -------------------------------------------------
def artifact_uri(experiment_id: int, run_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"


def _dataset_json(row: Any) -> dict[str, Any]:
    stored = row.schema if isinstance(row.schema, dict) else {}
    kept = stored.get("mlflow")
    if isinstance(kept, dict):  # logged by an MLflow client: give back what it sent
        return {"tags": kept.get("tags", []), "dataset": kept["dataset"]}
    return {
        "tags": [{"key": "mlflow.data.context", "value": row.context}],
        "dataset": {
            "name": row.name,
            "digest": row.fingerprint,
            "source_type": "modelyard",
            "source": json.dumps({"rows": row.num_rows}),
            "schema": json.dumps(stored, sort_keys=True),
        },
    }


def run_info(row: Any, experiment_id: int | None) -> dict[str, Any]:
    """MLflow's RunInfo of a ``runs`` row."""
    experiment = experiment_id if experiment_id is not None else 0
    info: dict[str, Any] = {
        "run_uuid": row.run_id,
        "run_id": row.run_id,
        "experiment_id": str(experiment),
        "run_name": row.name,
        "user_id": row.user_id or "",
        "status": row.status.upper(),
        "start_time": ms(row.start_time),
        "artifact_uri": artifact_uri(experiment, row.run_id),
        "lifecycle_stage": "active" if row.deleted_at is None else "deleted",
    }
    if row.end_time is not None:
        info["end_time"] = ms(row.end_time)
    return info


def _with_experiment() -> Any:
    return select(t.runs, t.experiments.c.experiment_id).select_from(
        t.runs.outerjoin(t.experiments, t.experiments.c.name == _R.experiment)
    )


def load_runs(conn: Connection, run_ids: list[str]) -> list[dict[str, Any]]:
    """The runs ``run_ids`` in MLflow's JSON, in that order: six queries for any number."""
    if not run_ids:
        return []
    rows = {r.run_id: r for r in conn.execute(_with_experiment().where(_R.run_id.in_(run_ids)))}
    data: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for table, kind in ((t.params, "params"), (t.tags, "tags")):
        for r in conn.execute(
            select(table.c.run_id, table.c.key, table.c.value).where(table.c.run_id.in_(run_ids))
        ):
            data[r.run_id][kind].append({"key": r.key, "value": r.value})
    lm = t.latest_metrics.c
    for r in conn.execute(select(t.latest_metrics).where(lm.run_id.in_(run_ids))):
        data[r.run_id]["metrics"].append(
            {
                "key": r.key,
                "value": json_number(r.value),
                "timestamp": r.timestamp // 1000,
                "step": r.step,
            }
        )
    for r in conn.execute(select(t.run_datasets).where(t.run_datasets.c.run_id.in_(run_ids))):
        data[r.run_id]["inputs"].append(_dataset_json(r))
    lg = t.logged_models.c
    for out_row in conn.execute(select(lg.run_id, lg.model_id).where(lg.run_id.in_(run_ids))):
        data[out_row.run_id]["outputs"].append({"model_id": out_row.model_id, "step": 0})
    out = []
    for run_id in run_ids:
        row = rows.get(run_id)
        if row is None:
            continue
        info = run_info(row, row.experiment_id)
        found = data.get(run_id, {})
        run: dict[str, Any] = {
            "info": info,
            "data": {
                k: sorted(found.get(k, []), key=lambda e: e["key"])
                for k in ("metrics", "params", "tags")
                if found.get(k)
            },
            "inputs": {"dataset_inputs": found["inputs"]} if found.get("inputs") else {},
        }
        if found.get("outputs"):
            run["outputs"] = {"model_outputs": found["outputs"]}
        out.append(run)
    return out


def get_run(stores: Stores, run_id: str) -> dict[str, Any]:
    with stores.metadata.read() as conn:
        runs = load_runs(conn, [run_id])
    if not runs:
        raise missing(f"Run with id={run_id} not found")
    return runs[0]


# -- runs ----------------------------------------------------------------------------------
def _status(value: Any) -> str:
    status = str(value or "RUNNING").upper()
    if status not in STATUSES:
        raise invalid(f"status {value!r} is not one of {', '.join(STATUSES)}")
    return status.lower()


@endpoint("POST", f"{V2}/runs/create", "track")
def create(call: Call) -> dict[str, Any]:
    args = call.args
    tags = kv_dict(args.items("tags"), "run tag")
    for key, value in tags.items():
        _value(value, "tag", check_key(key, "tag"), MAX_TAG_VALUE)
    name = args.text("run_name", required=False) or tags.get(RUN_NAME_TAG) or _made_up_name()
    tags.setdefault(RUN_NAME_TAG, name)
    start = args.integer("start_time", _time.now_us() // 1000)
    metadata = call.stores.metadata
    run_id = uuid.uuid4().hex
    with metadata.write() as conn:
        experiment = _experiments.row_by_id(
            conn, args.text("experiment_id", required=False, default="0")
        )
        if experiment.lifecycle_stage != "active":
            raise MlflowError(
                "INVALID_STATE",
                f"The experiment {experiment.experiment_id} must be in the 'active' state. "
                "Current state is deleted.",
            )
        conn.execute(
            t.runs.insert(),
            {
                "run_id": run_id,
                "experiment": experiment.name,
                "name": name[:250],
                "status": "running",
                "start_time": start * 1000,
                "user_id": args.text("user_id", required=False)[:250] or None,
                "git_commit": tags.get("mlflow.source.git.commit", "")[:64] or None,
                "environment": {},
            },
        )
        if tags:
            conn.execute(
                t.tags.insert(), [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
            )
    # What was just written, without reading it back (one less transaction per run).
    info = {
        "run_uuid": run_id,
        "run_id": run_id,
        "experiment_id": str(experiment.experiment_id),
        "run_name": name[:250],
        "user_id": args.text("user_id", required=False)[:250],
        "status": "RUNNING",
        "start_time": start,
        "artifact_uri": artifact_uri(experiment.experiment_id, run_id),
        "lifecycle_stage": "active",
    }
    data = {"tags": [{"key": k, "value": v} for k, v in sorted(tags.items())]}
    return {"run": {"info": info, "data": data, "inputs": {}}}


def _made_up_name() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


@endpoint("GET", f"{V2}/runs/get", "read")
def get(call: Call) -> dict[str, Any]:
    return {"run": get_run(call.stores, run_id_arg(call))}


@endpoint("POST", f"{V2}/runs/update", "track")
def update(call: Call) -> dict[str, Any]:
    run_id = run_id_arg(call)
    changes: dict[str, Any] = {}
    if call.args.get("status") is not None:
        changes["status"] = _status(call.args.get("status"))
        if changes["status"] != "running":
            changes["lease_until"] = None
    if call.args.get("end_time") is not None:
        changes["end_time"] = call.args.integer("end_time") * 1000
    name = call.args.text("run_name", required=False)
    with call.stores.metadata.write() as conn:
        run_row(conn, run_id, active=True)
        if name:
            changes["name"] = name[:250]
            call.stores.metadata.upsert(
                conn,
                t.tags,
                [{"run_id": run_id, "key": RUN_NAME_TAG, "value": name}],
                keys=("run_id", "key"),
                update=("value",),
            )
        if changes:
            conn.execute(t.runs.update().where(_R.run_id == run_id).values(**changes))
        row = conn.execute(_with_experiment().where(_R.run_id == run_id)).one()
    return {"run_info": run_info(row, row.experiment_id)}


def _lifecycle(call: Call, deleted_at: int | None) -> dict[str, Any]:
    run_id = run_id_arg(call)
    with call.stores.metadata.write() as conn:
        run_row(conn, run_id)
        conn.execute(t.runs.update().where(_R.run_id == run_id).values(deleted_at=deleted_at))
    return {}


@endpoint("POST", f"{V2}/runs/delete", "track")
def delete(call: Call) -> dict[str, Any]:
    return _lifecycle(call, _time.now_us())


@endpoint("POST", f"{V2}/runs/restore", "track")
def restore(call: Call) -> dict[str, Any]:
    return _lifecycle(call, None)


# -- params, metrics and tags ---------------------------------------------------------------
def _metric_rows(run_id: str, items: list[Any]) -> list[dict[str, Any]]:
    rows = []
    now_ms = _time.now_us() // 1000
    for item in items:
        if not isinstance(item, dict):
            raise invalid(
                f"each metric is an object with key, value, timestamp, step; got {item!r}"
            )
        key = check_key(item.get("key"), "metric")
        try:
            value = float(item.get("value"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise invalid(
                f"metric '{key}' has value {item.get('value')!r}; send a number"
            ) from None
        try:
            timestamp = in_range(int(item.get("timestamp") or now_ms), "timestamp")
            in_range(timestamp * 1000, f"timestamp {timestamp} in microseconds")
            step = in_range(int(item.get("step") or 0), "step")
        except (TypeError, ValueError):
            raise invalid(f"metric '{key}': timestamp and step must be integers") from None
        rows.append(
            {
                "run_id": run_id,
                "key": key,
                "value": finite_or_none(value),
                "step": step,
                "timestamp": timestamp * 1000,
            }
        )
    return rows


def log(
    stores: Stores,
    run_id: str,
    *,
    metrics: list[Any] = (),  # type: ignore[assignment]
    params: list[Any] = (),  # type: ignore[assignment]
    tags: list[Any] = (),  # type: ignore[assignment]
) -> None:
    """Store a batch in one transaction (all or nothing), as MLflow's log-batch does."""
    for what, items in (("metrics", metrics), ("params", params), ("tags", tags)):
        if len(items) > MAX_BATCH[what]:
            raise invalid(
                f"A batch logging request can contain at most {MAX_BATCH[what]} {what}. "
                f"Got {len(items)} {what}. Split the batch."
            )
    metric_rows = _metric_rows(run_id, list(metrics))
    new_params: dict[str, str] = {}
    for item in params:
        if not isinstance(item, dict):
            raise invalid(f"each param is an object with key and value; got {item!r}")
        key = check_key(item.get("key"), "param")
        value = _value(item.get("value"), "param", key, MAX_PARAM_VALUE)
        if new_params.get(key, value) != value:
            raise invalid(f"param '{key}' is given two values in one batch")
        new_params[key] = value
    new_tags: dict[str, str] = {}
    for item in tags:
        if not isinstance(item, dict):
            raise invalid(f"each tag is an object with key and value; got {item!r}")
        key = check_key(item.get("key"), "tag")
        new_tags[key] = _value(item.get("value"), "tag", key, MAX_TAG_VALUE)
    metadata = stores.metadata
    with metadata.write() as conn:
        run_row(conn, run_id, active=True)
        if new_params:
            _insert_params(conn, run_id, new_params)
        if new_tags:
            metadata.upsert(
                conn,
                t.tags,
                [{"run_id": run_id, "key": k, "value": v} for k, v in new_tags.items()],
                keys=("run_id", "key"),
                update=("value",),
            )
            if RUN_NAME_TAG in new_tags:
                conn.execute(
                    t.runs.update()
                    .where(_R.run_id == run_id)
                    .values(name=new_tags[RUN_NAME_TAG][:250])
                )
        if metric_rows:
            store_metrics(metadata, conn, metric_rows)


def _insert_params(conn: Connection, run_id: str, params: dict[str, str]) -> None:
    """Params are immutable, as in MLflow: the same value again is fine, another is a 400."""
    p = t.params.c
    have = {
        r.key: r.value
        for r in conn.execute(
            select(p.key, p.value).where(p.run_id == run_id, p.key.in_(list(params)))
        )
    }
    for key, value in params.items():
        if key in have and have[key] != value:
            raise invalid(
                f"Changing param values is not allowed. Param with key='{key}' was already "
                f"logged with value='{have[key]}' for run ID='{run_id}'. Attempted logging "
                f"new value '{value}'."
            )
    fresh = [{"run_id": run_id, "key": k, "value": v} for k, v in params.items() if k not in have]
    if fresh:
        conn.execute(t.params.insert(), fresh)


@endpoint("POST", f"{V2}/runs/log-batch", "track")
def log_batch(call: Call) -> dict[str, Any]:
    args = call.args
    log(
        call.stores,
        run_id_arg(call),
        metrics=args.items("metrics"),
        params=args.items("params"),
        tags=args.items("tags"),
    )
    return {}


@endpoint("POST", f"{V2}/runs/log-metric", "track")
def log_metric(call: Call) -> dict[str, Any]:
    a = call.args
    item = {
        "key": a.text("key"),
        "value": a.number("value"),
        "timestamp": a.get("timestamp"),
        "step": a.get("step"),
    }
    log(call.stores, run_id_arg(call), metrics=[item])
    return {}


@endpoint("POST", f"{V2}/runs/log-parameter", "track")
def log_parameter(call: Call) -> dict[str, Any]:
    item = {"key": call.args.text("key"), "value": call.args.get("value", "")}
    log(call.stores, run_id_arg(call), params=[item])
    return {}


@endpoint("POST", f"{V2}/runs/set-tag", "track")
def set_tag(call: Call) -> dict[str, Any]:
    item = {"key": call.args.text("key"), "value": call.args.get("value", "")}
    log(call.stores, run_id_arg(call), tags=[item])
    return {}


@endpoint("POST", f"{V2}/runs/delete-tag", "track")
def delete_tag(call: Call) -> dict[str, Any]:
    run_id, key = call.args.text("run_id"), call.args.text("key")
    with call.stores.metadata.write() as conn:
        run_row(conn, run_id, active=True)
        gone = conn.execute(
            t.tags.delete().where(t.tags.c.run_id == run_id, t.tags.c.key == key)
        ).rowcount
    if not gone:
        raise missing(f"No tag with name: {key} in run with id {run_id}")
    return {}
