"""MLflow 3's logged models: ``mlflow.<flavor>.log_model`` creates one, uploads its files
under it, then marks it ready; registering it makes a modelyard model version of them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.server import _experiments
from modelyard.server._endpoints import V2, Call, endpoint, kv_dict, ms, tag_list
from modelyard.server._errors import invalid, missing
from modelyard.server._paging import page, page_token

STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
_L = t.logged_models.c


def model_uri(experiment_id: Any, model_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts"


def to_json(row: Any) -> dict[str, Any]:
    return {
        "info": {
            "model_id": row.model_id,
            "experiment_id": str(row.experiment_id),
            "name": row.name,
            "creation_timestamp_ms": ms(row.created_at),
            "last_updated_timestamp_ms": ms(row.updated_at),
            "artifact_uri": model_uri(row.experiment_id, row.model_id),
            "status": row.status,
            "model_type": row.model_type,
            "source_run_id": row.run_id or "",
            "tags": tag_list(row.tags),
        },
        "data": {"params": tag_list(row.params)},
    }


def row_of(conn: Any, model_id: str) -> Any:
    row = conn.execute(select(t.logged_models).where(_L.model_id == model_id)).first()
    if row is None or row.deleted_at is not None:
        raise missing(f"Logged model with ID '{model_id}' not found.")
    return row


@endpoint("POST", f"{V2}/logged-models", "track")
def create(call: Call) -> dict[str, Any]:
    args = call.args
    model_id = f"m-{uuid.uuid4().hex}"
    now = _time.now_us()
    with call.stores.metadata.write() as conn:
        experiment = _experiments.row_by_id(conn, args.text("experiment_id"))
        conn.execute(
            t.logged_models.insert(),
            {
                "model_id": model_id,
                "experiment_id": experiment.experiment_id,
                "name": args.text("name", required=False) or "model",
                "run_id": args.text("source_run_id", required=False) or None,
                "status": "LOGGED_MODEL_PENDING",
                "model_type": args.text("model_type", required=False),
                "tags": kv_dict(args.items("tags"), "model tag"),
                "params": kv_dict(args.items("params"), "model param"),
                "created_at": now,
                "updated_at": now,
            },
        )
        return {"model": to_json(row_of(conn, model_id))}


@endpoint("GET", f"{V2}/logged-models/{{model_id}}", "read")
def get(call: Call) -> dict[str, Any]:
    with call.stores.metadata.read() as conn:
        return {"model": to_json(row_of(conn, call.args.text("model_id")))}


def _change(call: Call, **values: Any) -> dict[str, Any]:
    model_id = call.args.text("model_id")
    with call.stores.metadata.write() as conn:
        row = row_of(conn, model_id)
        for name in ("tags", "params"):
            if callable(values.get(name)):
                values[name] = values[name](dict(getattr(row, name) or {}))
        conn.execute(
            t.logged_models.update()
            .where(_L.model_id == model_id)
            .values(updated_at=_time.now_us(), **values)
        )
        return {"model": to_json(row_of(conn, model_id))}


@endpoint("PATCH", f"{V2}/logged-models/{{model_id}}", "track")
def finalize(call: Call) -> dict[str, Any]:
    status = call.args.text("status")
    if status not in STATUSES:
        raise invalid(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return _change(call, status=status)


@endpoint("PATCH", f"{V2}/logged-models/{{model_id}}/tags", "track")
def set_tags(call: Call) -> dict[str, Any]:
    tags = kv_dict(call.args.items("tags"), "model tag")
    _change(call, tags=lambda old: {**old, **tags})
    return {}


@endpoint("DELETE", f"{V2}/logged-models/{{model_id}}/tags/{{tag_key}}", "track")
def delete_tag(call: Call) -> dict[str, Any]:
    key = call.args.text("tag_key")
    _change(call, tags=lambda old: {k: v for k, v in old.items() if k != key})
    return {}


@endpoint("POST", f"{V2}/logged-models/{{model_id}}/params", "track")
def log_params(call: Call) -> dict[str, Any]:
    params = kv_dict(call.args.items("params"), "model param")
    _change(call, params=lambda old: {**old, **params})
    return {}


@endpoint("DELETE", f"{V2}/logged-models/{{model_id}}", "track")
def delete(call: Call) -> dict[str, Any]:
    _change(call, deleted_at=_time.now_us())
    return {}


@endpoint("POST", f"{V2}/logged-models/search", "read")
def search(call: Call) -> dict[str, Any]:
    args = call.args
    conditions: list[Any] = [_L.deleted_at.is_(None)]
    ids = [_experiments.experiment_id(e) for e in args.items("experiment_ids")]
    if ids:
        conditions.append(_L.experiment_id.in_(ids))
    text = args.text("filter", required=False).strip()
    if text:
        import re

        for part in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
            m = re.fullmatch(
                r"\s*(?:attributes\.)?(name|model_id|source_run_id|status|model_type)\s*"
                r"(=|!=)\s*'([^']*)'\s*",
                part,
                re.IGNORECASE,
            )
            if m is None:
                raise invalid(
                    f"cannot parse logged-model filter {part!r}; the server supports "
                    "name, model_id, source_run_id, status or model_type = / != 'VALUE'"
                )
            column = {
                "name": _L.name,
                "model_id": _L.model_id,
                "source_run_id": _L.run_id,
                "status": _L.status,
                "model_type": _L.model_type,
            }[m[1].lower()]
            conditions.append(column == m[3] if m[2] == "=" else column != m[3])
    limit = args.integer("max_results", 100, low=1)
    offset = page_token(args.get("page_token"))
    with call.stores.metadata.read() as conn:
        rows = conn.execute(
            select(t.logged_models)
            .where(*conditions)
            .order_by(_L.created_at.desc(), _L.model_id)
            .offset(offset)
            .limit(limit + 1)
        ).all()
    return page("models", [to_json(r) for r in rows], offset, limit)
