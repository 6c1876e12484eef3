"""MLflow's model registry over modelyard's: registered models, their tags and aliases,
and the JSON and filters of versions (``_model_versions.py`` makes and changes versions).

A version that an MLflow client creates is an ordinary modelyard version (``modelyard
models show``, the dashboard). Alias moves go through ``Registry.set_alias`` (history,
audit log), and need an admin key, as in modelyard.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, or_, select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.errors import ModelyardError
from modelyard.registry import check_name
from modelyard.security import acting_as
from modelyard.server._endpoints import (
    V2,
    Call,
    endpoint,
    in_range,
    kv_dict,
    ms,
    tag_list,
)
from modelyard.server._errors import MlflowError, exists, invalid, missing
from modelyard.server._guard import actor_of
from modelyard.server._paging import page, page_token

_M = t.registered_models.c
_V = t.model_versions.c


# -- JSON ------------------------------------------------------------------------------------
def mlflow_lineage(row: Any) -> dict[str, Any]:
    found = (row.lineage or {}).get("mlflow")
    return found if isinstance(found, dict) else {}


def version_json(row: Any, aliases: list[str]) -> dict[str, Any]:
    kept = mlflow_lineage(row)
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


def aliases_by_version(conn: Any, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for r in conn.execute(select(t.model_aliases).where(t.model_aliases.c.name == name)):
        out.setdefault(r.version, []).append(r.alias)
    return out


def model_row(conn: Any, name: str) -> Any:
    row = conn.execute(select(t.registered_models).where(_M.name == name)).first()
    if row is None:
        raise missing(f"Registered Model with name={name} not found")
    return row


def version_row(conn: Any, name: str, version: Any) -> Any:
    model_row(conn, name)
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
    aliases = aliases_by_version(conn, row.name)
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


def filter_conditions(text: str, columns: dict[str, Any], tag_column: Any) -> list[Any]:
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
        return {"registered_model": model_json(conn, model_row(conn, name))}


@endpoint("GET", f"{V2}/registered-models/get", "read")
def get_model(call: Call) -> dict[str, Any]:
    with call.stores.metadata.read() as conn:
        return {"registered_model": model_json(conn, model_row(conn, call.args.text("name")))}


@endpoint("GET", f"{V2}/registered-models/search", "read")
@endpoint("POST", f"{V2}/registered-models/search", "read")
def search_models(call: Call) -> dict[str, Any]:
    conditions = filter_conditions(
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
        row = model_row(conn, name)
        if callable(values.get("tags")):
            values["tags"] = values["tags"](dict(row.tags or {}))
        conn.execute(
            t.registered_models.update()
            .where(_M.name == name)
            .values(updated_at=_time.now_us(), **values)
        )
        return model_json(conn, model_row(conn, name))


@endpoint("DELETE", f"{V2}/registered-models/delete", "track")
def delete_model(call: Call) -> dict[str, Any]:
    """Only a model without versions (one a failed registration left behind): versions
    may be served, and modelyard keeps every version a server may have loaded."""
    name = call.args.text("name")
    with call.stores.metadata.write() as conn:
        model_row(conn, name)
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
        latest = model_json(conn, model_row(conn, call.args.text("name")))["latest_versions"]
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
        model_row(conn, name)
        number = conn.execute(
            select(t.model_aliases.c.version).where(
                t.model_aliases.c.name == name, t.model_aliases.c.alias == alias
            )
        ).scalar()
        if number is None:
            raise missing(f"Registered model alias {alias} not found.")
        row = version_row(conn, name, number)
        return {"model_version": version_json(row, aliases_by_version(conn, name).get(number, []))}
