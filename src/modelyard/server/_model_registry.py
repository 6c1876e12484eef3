"""MLflow's model registry over modelyard's: registered models, versions, aliases, tags.

A version that an MLflow client creates is an ordinary modelyard version (``modelyard
models show``, the dashboard): its files (an MLflow 3 logged model's, or a run's folder)
become one folder manifest in the artifact store, its flavor is ``mlflow`` and its
signature is read from the ``MLmodel`` file when it has columns. Alias moves go through
``Registry.set_alias`` (history, audit log), and need an admin key, as in modelyard.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import func, or_, select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.contracts import Field, Schema
from modelyard.errors import ModelyardError
from modelyard.registry import META_FILE, check_name
from modelyard.security import acting_as
from modelyard.server._artifacts import Owner, owner_files, owner_of
from modelyard.server._endpoints import (
    V2,
    Call,
    Stores,
    endpoint,
    in_range,
    kv_dict,
    ms,
    tag_list,
)
from modelyard.server._errors import MlflowError, exists, invalid, missing
from modelyard.server._guard import actor_of
from modelyard.server._logged_models import model_uri
from modelyard.server._paging import page, page_token

_M = t.registered_models.c
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


# -- JSON ------------------------------------------------------------------------------------
def _mlflow(row: Any) -> dict[str, Any]:
    found = (row.lineage or {}).get("mlflow")
    return found if isinstance(found, dict) else {}


def version_json(row: Any, aliases: list[str]) -> dict[str, Any]:
    kept = _mlflow(row)
    tags = kept.get("tags") if "tags" in kept else (row.tags or {})
    out: dict[str, Any] = {
        "name": row.name,
        "version": str(row.version),
        "creation_timestamp": ms(row.created_at),
        "last_updated_timestamp": ms(kept.get("updated_at") or row.created_at),
        "current_stage": "None",
        "description": row.description,
        "source": kept.get("source") or (f"runs:/{row.run_id}/model" if row.run_id else ""),
        "run_id": row.run_id or "",
        "status": "READY",
        "run_link": "",
        "aliases": sorted(aliases),
        "tags": tag_list(tags),
    }
    if kept.get("model_id"):
        out["model_id"] = kept["model_id"]
    return out


def _aliases(conn: Any, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for r in conn.execute(select(t.model_aliases).where(t.model_aliases.c.name == name)):
        out.setdefault(r.version, []).append(r.alias)
    return out


def _model_row(conn: Any, name: str) -> Any:
    row = conn.execute(select(t.registered_models).where(_M.name == name)).first()
    if row is None:
        raise missing(f"Registered Model with name={name} not found")
    return row


def _version_row(conn: Any, name: str, version: Any) -> Any:
    _model_row(conn, name)
    try:
        number = in_range(int(version), "version")
    except (TypeError, ValueError):
        raise invalid(f"version {version!r} is not a number") from None
    row = conn.execute(
        select(t.model_versions).where(_V.name == name, _V.version == number)
    ).first()
    if row is None:
        raise missing(f"Model Version (name={name}, version={version}) not found")
    return row


def model_json(conn: Any, row: Any) -> dict[str, Any]:
    aliases = _aliases(conn, row.name)
    latest = conn.execute(
        select(t.model_versions).where(_V.name == row.name).order_by(_V.version.desc()).limit(1)
    ).first()
    return {
        "name": row.name,
        "creation_timestamp": ms(row.created_at),
        "last_updated_timestamp": ms(row.updated_at),
        "description": row.description,
        "latest_versions": []
        if latest is None
        else [version_json(latest, aliases.get(latest.version, []))],
        "aliases": [
            {"alias": a, "version": str(v)}
            for v, names in sorted(aliases.items())
            for a in sorted(names)
        ],
        "tags": tag_list(row.tags),
    }


# -- filters ---------------------------------------------------------------------------------
_CLAUSE = re.compile(
    r"\s*(?P<key>(?:tags?\.)?(?:`[^`]+`|[\w.\-]+))\s*(?P<op>!=|=|LIKE|ILIKE|IN)\s*"
    r"(?P<value>'(?:[^']|'')*'|\"[^\"]*\"|\([^)]*\)|[-+\d.]+)\s*",
    re.IGNORECASE,
)


def _conditions(text: str, columns: dict[str, Any], tag_column: Any) -> list[Any]:
    out: list[Any] = []
    if not text.strip():
        return out
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise invalid(f"cannot parse the filter clause {part!r}; write e.g. name = 'my-model'")
        key, op, raw = m["key"], m["op"].upper(), m["value"]
        values = [v.strip().strip("'\"") for v in raw[1:-1].split(",")] if raw[0] == "(" else None
        value = raw[1:-1].replace("''", "'") if raw[0] in "'\"" else raw
        if key.lower().startswith(("tags.", "tag.")):
            tag = key.split(".", 1)[1].strip("`")
            column = tag_column[tag].as_string()
        else:
            column = columns.get(key.lower())
            if column is None:
                raise invalid(
                    f"cannot filter on {key!r}; use one of {', '.join(sorted(columns))} or tags.KEY"
                )
        if op == "=":
            out.append(column == value)
        elif op == "!=":
            # As MLflow's stores answer: a model without the tag is not equal to the value
            # (the client filters prompts out with tags.`mlflow.prompt.is_prompt` != 'true').
            out.append(or_(column.is_(None), column != value))
        elif op == "LIKE":
            out.append(column.like(value))
        elif op == "ILIKE":
            out.append(func.lower(column).like(value.lower()))
        else:
            out.append(column.in_(values or []))
    return out


# -- registered models -----------------------------------------------------------------------
@endpoint("POST", f"{V2}/registered-models/create", "track")
def create_model(call: Call) -> dict[str, Any]:
    name = call.args.text("name")
    try:
        check_name(name)
    except ModelyardError as exc:
        raise invalid(exc.message) from None
    now = _time.now_us()
    with call.stores.metadata.write() as conn:
        if conn.execute(select(_M.name).where(_M.name == name)).first() is not None:
            raise exists(f"Registered Model (name={name}) already exists.")
        conn.execute(
            t.registered_models.insert(),
            {
                "name": name,
                "description": call.args.text("description", required=False),
                "latest_version": 0,
                "created_at": now,
                "updated_at": now,
                "tags": kv_dict(call.args.items("tags"), "model tag"),
            },
        )
        return {"registered_model": model_json(conn, _model_row(conn, name))}


@endpoint("GET", f"{V2}/registered-models/get", "read")
def get_model(call: Call) -> dict[str, Any]:
    with call.stores.metadata.read() as conn:
        return {"registered_model": model_json(conn, _model_row(conn, call.args.text("name")))}


@endpoint("GET", f"{V2}/registered-models/search", "read")
@endpoint("POST", f"{V2}/registered-models/search", "read")
def search_models(call: Call) -> dict[str, Any]:
    conditions = _conditions(
        call.args.text("filter", required=False), {"name": _M.name}, t.registered_models.c.tags
    )
    limit = call.args.integer("max_results", 100, low=1)
    offset = page_token(call.args.get("page_token"))
    order = [_M.name.asc()]
    for clause in call.args.items("order_by"):
        field, _, direction = str(clause).strip().partition(" ")
        column = {
            "name": _M.name,
            "timestamp": _M.updated_at,
            "last_updated_timestamp": _M.updated_at,
        }.get(field)
        if column is None:
            raise invalid(f"cannot order registered models by {field!r}")
        order.insert(0, column.desc() if direction.strip().upper() == "DESC" else column.asc())
    with call.stores.metadata.read() as conn:
        rows = conn.execute(
            select(t.registered_models)
            .where(*conditions)
            .order_by(*order)
            .offset(offset)
            .limit(limit + 1)
        ).all()
        models = [model_json(conn, r) for r in rows]
    return page("registered_models", models, offset, limit)


def _update_model(call: Call, **values: Any) -> Any:
    name = call.args.text("name")
    with call.stores.metadata.write() as conn:
        row = _model_row(conn, name)
        if callable(values.get("tags")):
            values["tags"] = values["tags"](dict(row.tags or {}))
        conn.execute(
            t.registered_models.update()
            .where(_M.name == name)
            .values(updated_at=_time.now_us(), **values)
        )
        return model_json(conn, _model_row(conn, name))


@endpoint("DELETE", f"{V2}/registered-models/delete", "track")
def delete_model(call: Call) -> dict[str, Any]:
    """Only a model without versions (one a failed registration left behind): versions
    may be served, and modelyard keeps every version a server may have loaded."""
    name = call.args.text("name")
    with call.stores.metadata.write() as conn:
        _model_row(conn, name)
        has = conn.execute(select(_V.version).where(_V.name == name).limit(1)).first()
        if has is not None:
            raise MlflowError(
                "INVALID_STATE",
                f"Registered model {name} has versions; modelyard keeps registered versions "
                "(a server may serve them): move its aliases instead",
            )
        conn.execute(t.registered_models.delete().where(_M.name == name))
    return {}


@endpoint("PATCH", f"{V2}/registered-models/update", "track")
def update_model(call: Call) -> dict[str, Any]:
    return {
        "registered_model": _update_model(
            call, description=call.args.text("description", required=False)
        )
    }


@endpoint("POST", f"{V2}/registered-models/set-tag", "track")
def set_model_tag(call: Call) -> dict[str, Any]:
    key, value = call.args.text("key"), str(call.args.get("value", ""))
    _update_model(call, tags=lambda tags: {**tags, key: value})
    return {}


@endpoint("DELETE", f"{V2}/registered-models/delete-tag", "track")
def delete_model_tag(call: Call) -> dict[str, Any]:
    key = call.args.text("key")
    _update_model(call, tags=lambda tags: {k: v for k, v in tags.items() if k != key})
    return {}


@endpoint("POST", f"{V2}/registered-models/get-latest-versions", "read")
@endpoint("GET", f"{V2}/registered-models/get-latest-versions", "read")
def latest_versions(call: Call) -> dict[str, Any]:
    with call.stores.metadata.read() as conn:
        latest = model_json(conn, _model_row(conn, call.args.text("name")))["latest_versions"]
    return {"model_versions": latest}


# -- aliases ---------------------------------------------------------------------------------
@endpoint("POST", f"{V2}/registered-models/alias", "admin")
def set_alias(call: Call) -> dict[str, Any]:
    name, alias = call.args.text("name"), call.args.text("alias")
    version = call.args.integer("version", low=1)
    with acting_as(actor_of(call.key)):
        call.stores.registry.set_alias(name, alias, version)
    return {}


@endpoint("DELETE", f"{V2}/registered-models/alias", "admin")
def delete_alias(call: Call) -> dict[str, Any]:
    with acting_as(actor_of(call.key)):
        call.stores.registry.delete_alias(call.args.text("name"), call.args.text("alias"))
    return {}


@endpoint("GET", f"{V2}/registered-models/alias", "read")
def get_by_alias(call: Call) -> dict[str, Any]:
    name, alias = call.args.text("name"), call.args.text("alias")
    with call.stores.metadata.read() as conn:
        _model_row(conn, name)
        number = conn.execute(
            select(t.model_aliases.c.version).where(
                t.model_aliases.c.name == name, t.model_aliases.c.alias == alias
            )
        ).scalar()
        if number is None:
            raise missing(f"Registered model alias {alias} not found.")
        row = _version_row(conn, name, number)
        return {"model_version": version_json(row, _aliases(conn, name).get(number, []))}


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
        row = _version_row(conn, name, version.version)
        return {"model_version": version_json(row, [])}


@endpoint("GET", f"{V2}/model-versions/get", "read")
def get_version(call: Call) -> dict[str, Any]:
    name = call.args.text("name")
    with call.stores.metadata.read() as conn:
        row = _version_row(conn, name, call.args.text("version"))
        return {"model_version": version_json(row, _aliases(conn, name).get(row.version, []))}


def _update_version(call: Call, change: Any) -> dict[str, Any]:
    name = call.args.text("name")
    with call.stores.metadata.write() as conn:
        row = _version_row(conn, name, call.args.text("version"))
        lineage = dict(row.lineage or {})
        kept = dict(_mlflow(row)) or {"tags": dict(row.tags or {})}
        values = change(row, kept)
        kept["updated_at"] = _time.now_us()
        lineage["mlflow"] = kept
        conn.execute(
            t.model_versions.update()
            .where(_V.name == name, _V.version == row.version)
            .values(lineage=lineage, **values)
        )
        row = _version_row(conn, name, row.version)
        return version_json(row, _aliases(conn, name).get(row.version, []))


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
    conditions = _conditions(call.args.text("filter", required=False), columns, _V.tags)
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
                aliases[r.name] = _aliases(conn, r.name)
            out.append(version_json(r, aliases[r.name].get(r.version, [])))
    return page("model_versions", out, offset, limit)


@endpoint("GET", f"{V2}/model-versions/get-download-uri", "read")
def download_uri(call: Call) -> dict[str, Any]:
    name = call.args.text("name")
    with call.stores.metadata.read() as conn:
        row = _version_row(conn, name, call.args.text("version"))
        kept = _mlflow(row)
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
