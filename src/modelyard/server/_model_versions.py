"""MLflow's model versions over modelyard's: create (from a logged model, a run's folder or
a proxied artifact path), get, update, tags, search and the download URI.

A version's files become one folder manifest in the artifact store, with a
``modelyard-model.json`` (flavor ``mlflow``, the MLmodel column signature) unless modelyard
itself logged the folder, in which case its own flavor and signature are kept.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.contracts import Field, Schema
from modelyard.errors import ModelyardError
from modelyard.registry import META_FILE
from modelyard.server._artifacts import Owner, owner_files, owner_of
from modelyard.server._endpoints import V2, Call, Stores, endpoint, kv_dict
from modelyard.server._errors import invalid, missing
from modelyard.server._logged_models import model_uri
from modelyard.server._model_registry import (
    aliases_by_version,
    filter_conditions,
    mlflow_lineage,
    version_json,
    version_row,
)
from modelyard.server._paging import page, page_token

_V = t.model_versions.c
_TYPES = {
    "double": "float64",
    "float": "float64",
    "long": "int64",
    "integer": "int64",
    "boolean": "bool",
    "string": "string",
    "datetime": "datetime",
}


# -- versions --------------------------------------------------------------------------------
def _signature(stores: Stores, files: dict[str, tuple[str, int]]) -> dict[str, Any]:
    entry = files.get("MLmodel")
    return mlflow_signature_of(None if entry is None else stores.artifacts.get(entry[0]))


def mlflow_meta(
    artifacts: Any, signature: dict[str, Any], run_id: str | None
) -> dict[str, tuple[str, int]]:
    """The modelyard-model.json that makes an MLflow model's folder loadable by modelyard
    (flavor ``mlflow``), stored; as a manifest entry."""
    meta = json.dumps(
        {"flavor": "mlflow", "settings": {}, "signature": signature, "run_id": run_id},
        indent=2,
        sort_keys=True,
    ).encode()
    return {META_FILE: (artifacts.put(meta), len(meta))}


def mlflow_signature_of(mlmodel_file: bytes | None) -> dict[str, Any]:
    """modelyard's signature from MLmodel's column signature (empty for tensors or none)."""
    import yaml

    empty: dict[str, Any] = {"inputs": {"fields": []}, "outputs": {"fields": []}}
    if mlmodel_file is None:
        return empty
    try:
        mlmodel = yaml.safe_load(mlmodel_file)
        signature = mlmodel.get("signature") or {}
    except (yaml.YAMLError, AttributeError):
        return empty  # not an MLmodel file modelyard can read: the version has no schema
    out = dict(empty)
    for part in ("inputs", "outputs"):
        try:
            specs = json.loads(signature.get(part) or "[]")
            fields = tuple(
                Field(
                    name=s["name"],
                    dtype=_TYPES[s["type"]],
                    nullable=not s.get("required", True),
                )
                for s in specs
            )
            out[part] = Schema(fields=fields).to_json_dict()
        except (ValueError, KeyError, TypeError):
            continue  # tensors, or a type modelyard has no column for: no schema
    return out


def _source_files(
    stores: Stores, source: str, run_id: str
) -> tuple[dict[str, tuple[str, int]], str | None]:
    """The files ``source`` names on this server, and the logged model's id if it is one."""
    if source.startswith("models:/m-"):
        model_id = source[len("models:/") :].split("/", 1)[0]
        owner = Owner("model", model_id, "")
    elif source.startswith("runs:/"):
        rid, _, path = source[len("runs:/") :].partition("/")
        owner = Owner("run", rid, path.strip("/"))
    elif source.startswith("mlflow-artifacts:/"):
        owner = owner_of(source[len("mlflow-artifacts:/") :])
    else:
        raise invalid(
            f"model source {source!r} is not on this server; log the model to this server "
            "first (runs:/RUN_ID/PATH, models:/MODEL_ID or mlflow-artifacts:/…)"
        )
    with stores.metadata.read() as conn:
        files = owner_files(stores, conn, Owner(owner.kind, owner.id, ""))
    prefix = f"{owner.rel}/" if owner.rel else ""
    picked = {p[len(prefix) :]: v for p, v in files.items() if p.startswith(prefix)}
    if not picked:
        raise invalid(f"model source {source!r} holds no files on this server")
    return picked, owner.id if owner.kind == "model" else None


@endpoint("POST", f"{V2}/model-versions/create", "track")
def create_version(call: Call) -> dict[str, Any]:
    args, stores = call.args, call.stores
    name, source = args.text("name"), args.text("source")
    run_id = args.text("run_id", required=False) or None
    files, model_id = _source_files(stores, source, run_id or "")
    model_id = model_id or args.text("model_id", required=False) or None
    if run_id is None and model_id is not None:
        with stores.metadata.read() as conn:
            run_id = conn.execute(
                select(t.logged_models.c.run_id).where(t.logged_models.c.model_id == model_id)
            ).scalar()
    flavor = "mlflow"
    if META_FILE in files:  # a model modelyard logged, registered by an MLflow client
        meta = json.loads(stores.artifacts.get(files[META_FILE][0]))
        flavor, signature = meta["flavor"], meta["signature"]
    else:
        signature = _signature(stores, files)
        files = {**files, **mlflow_meta(stores.artifacts, signature, run_id)}
    manifest = {
        "kind": "tree",
        "files": {p: {"digest": d, "size": s} for p, (d, s) in sorted(files.items())},
    }
    artifact = stores.artifacts.put(json.dumps(manifest, sort_keys=True).encode())
    tags = kv_dict(args.items("tags"), "version tag")
    mlflow = {"source": source, "model_id": model_id, "tags": tags}
    try:
        version = stores.registry.register_artifact(
            name,
            artifact,
            run_id=run_id,
            flavor=flavor,
            signature=signature,
            description=args.text("description", required=False),
            tags=tags,
            lineage={"mlflow": mlflow},
        )
    except ModelyardError as exc:
        if "does not exist" in exc.message and run_id:
            raise invalid(f"run_id {run_id!r} is not a run of this server") from None
        raise
    with stores.metadata.read() as conn:
        row = version_row(conn, name, version.version)
        return {"model_version": version_json(row, [])}


@endpoint("GET", f"{V2}/model-versions/get", "read")
def get_version(call: Call) -> dict[str, Any]:
    name = call.args.text("name")
    with call.stores.metadata.read() as conn:
        row = version_row(conn, name, call.args.text("version"))
        return {
            "model_version": version_json(row, aliases_by_version(conn, name).get(row.version, []))
        }


def _update_version(call: Call, change: Any) -> dict[str, Any]:
    name = call.args.text("name")
    with call.stores.metadata.write() as conn:
        row = version_row(conn, name, call.args.text("version"))
        lineage = dict(row.lineage or {})
        kept = dict(mlflow_lineage(row)) or {"tags": dict(row.tags or {})}
        values = change(row, kept)
        kept["updated_at"] = _time.now_us()
        lineage["mlflow"] = kept
        conn.execute(
            t.model_versions.update()
            .where(_V.name == name, _V.version == row.version)
            .values(lineage=lineage, **values)
        )
        row = version_row(conn, name, row.version)
        return version_json(row, aliases_by_version(conn, name).get(row.version, []))


@endpoint("PATCH", f"{V2}/model-versions/update", "track")
def update_version(call: Call) -> dict[str, Any]:
    description = call.args.text("description", required=False)
    return {"model_version": _update_version(call, lambda row, kept: {"description": description})}


@endpoint("POST", f"{V2}/model-versions/set-tag", "track")
def set_version_tag(call: Call) -> dict[str, Any]:
    key, value = call.args.text("key"), str(call.args.get("value", ""))

    def change(row: Any, kept: dict[str, Any]) -> dict[str, Any]:
        kept["tags"] = {**kept.get("tags", {}), key: value}
        return {"tags": {**(row.tags or {}), key: value}}

    _update_version(call, change)
    return {}


@endpoint("DELETE", f"{V2}/model-versions/delete-tag", "track")
def delete_version_tag(call: Call) -> dict[str, Any]:
    key = call.args.text("key")

    def change(row: Any, kept: dict[str, Any]) -> dict[str, Any]:
        kept["tags"] = {k: v for k, v in kept.get("tags", {}).items() if k != key}
        return {"tags": {k: v for k, v in (row.tags or {}).items() if k != key}}

    _update_version(call, change)
    return {}


@endpoint("GET", f"{V2}/model-versions/search", "read")
@endpoint("POST", f"{V2}/model-versions/search", "read")
def search_versions(call: Call) -> dict[str, Any]:
    columns = {
        "name": _V.name,
        "run_id": _V.run_id,
        "version": _V.version,
        "version_number": _V.version,
    }
    conditions = filter_conditions(call.args.text("filter", required=False), columns, _V.tags)
    limit = call.args.integer("max_results", 10_000, low=1)
    offset = page_token(call.args.get("page_token"))
    with call.stores.metadata.read() as conn:
        rows = conn.execute(
            select(t.model_versions)
            .where(*conditions)
            .order_by(_V.name, _V.version.desc())
            .offset(offset)
            .limit(limit + 1)
        ).all()
        aliases: dict[str, dict[int, list[str]]] = {}
        out = []
        for r in rows:
            if r.name not in aliases:
                aliases[r.name] = aliases_by_version(conn, r.name)
            out.append(version_json(r, aliases[r.name].get(r.version, [])))
    return page("model_versions", out, offset, limit)


@endpoint("GET", f"{V2}/model-versions/get-download-uri", "read")
def download_uri(call: Call) -> dict[str, Any]:
    name = call.args.text("name")
    with call.stores.metadata.read() as conn:
        row = version_row(conn, name, call.args.text("version"))
        kept = mlflow_lineage(row)
        if kept.get("model_id"):
            experiment = conn.execute(
                select(t.logged_models.c.experiment_id).where(
                    t.logged_models.c.model_id == kept["model_id"]
                )
            ).scalar()
            return {"artifact_uri": model_uri(experiment, kept["model_id"])}
        source = kept.get("source") or (f"runs:/{row.run_id}/model" if row.run_id else "")
        if source.startswith("runs:/"):
            rid, _, path = source[len("runs:/") :].partition("/")
            experiment = (
                conn.execute(
                    select(t.experiments.c.experiment_id)
                    .select_from(
                        t.runs.join(t.experiments, t.experiments.c.name == t.runs.c.experiment)
                    )
                    .where(t.runs.c.run_id == rid)
                ).scalar()
                or 0
            )
            return {
                "artifact_uri": f"mlflow-artifacts:/{experiment}/{rid}/artifacts/{path}".rstrip("/")
            }
        if source.startswith("mlflow-artifacts:/"):
            return {"artifact_uri": source}
    raise missing(f"model {name} version {row.version} has no files an MLflow client can fetch")
