"""MLflow's experiments over modelyard's: the ``experiments`` table gives each a number.

modelyard's runs name their experiment; the table maps that name to MLflow's id, so a run
logged by either client is in the same experiment for both. Experiment ``0`` is MLflow's
``Default``, where a script that sets no experiment logs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, cast, func, select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.server._endpoints import V2, Call, endpoint, in_range, kv_dict, ms, tag_list
from modelyard.server._errors import exists, invalid, missing
from modelyard.server._paging import page, page_token

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore

DEFAULT = "Default"
_E = t.experiments.c


def to_json(row: Any) -> dict[str, Any]:
    return {
        "experiment_id": str(row.experiment_id),
        "name": row.name,
        "artifact_location": f"mlflow-artifacts:/{row.experiment_id}",
        "lifecycle_stage": row.lifecycle_stage,
        "last_update_time": ms(row.updated_at),
        "creation_time": ms(row.created_at),
        "tags": tag_list(row.tags),
    }


def ensure_default(metadata: MetadataStore) -> None:
    """MLflow's experiment 0, ``Default``, exists from the server's first start."""
    now = _time.now_us()
    with metadata.write() as conn:
        if conn.execute(select(_E.experiment_id).where(_E.experiment_id == 0)).first() is None:
            row = {
                "experiment_id": 0,
                "name": DEFAULT,
                "lifecycle_stage": "active",
                "tags": {},
                "created_at": now,
                "updated_at": now,
            }
            metadata.insert_missing(conn, t.experiments, [row], keys=("name",))


def experiment_id(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid(f"experiment id {value!r} is not a number") from None
    return in_range(number, "experiment id")


def row_by_id(conn: Connection, value: Any) -> Any:
    row = conn.execute(
        select(t.experiments).where(_E.experiment_id == experiment_id(value))
    ).first()
    if row is None:
        raise missing(f"No Experiment with id={value} exists")
    return row


def _row_by_name(conn: Connection, name: str) -> Any:
    return conn.execute(select(t.experiments).where(_E.name == name)).first()


def names_by_id(conn: Connection, ids: list[int]) -> dict[int, str]:
    stmt = select(_E.experiment_id, _E.name).where(_E.experiment_id.in_(ids))
    return {int(i): n for i, n in conn.execute(stmt)}


def ids_by_name(conn: Connection, names: set[str]) -> dict[str, int]:
    stmt = select(_E.name, _E.experiment_id).where(_E.name.in_(sorted(names)))
    return {n: int(i) for n, i in conn.execute(stmt)}


def _check_name(name: str) -> str:
    if len(name) > 500:
        raise invalid(f"experiment name has {len(name)} characters; the limit is 500")
    return name


@endpoint("POST", f"{V2}/experiments/create", "track")
def create(call: Call) -> dict[str, Any]:
    name = _check_name(call.args.text("name"))
    tags = kv_dict(call.args.items("tags"), "experiment tag")
    metadata = call.stores.metadata
    now = _time.now_us()
    with metadata.write() as conn:
        if _row_by_name(conn, name) is not None:
            raise exists(f"Experiment '{name}' already exists.")
        new = conn.execute(
            t.experiments.insert().returning(_E.experiment_id),
            {
                "name": name,
                "lifecycle_stage": "active",
                "tags": tags,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
    return {"experiment_id": str(new)}


@endpoint("GET", f"{V2}/experiments/get", "read")
def get(call: Call) -> dict[str, Any]:
    with call.stores.metadata.read() as conn:
        return {"experiment": to_json(row_by_id(conn, call.args.text("experiment_id")))}


@endpoint("GET", f"{V2}/experiments/get-by-name", "read")
def get_by_name(call: Call) -> dict[str, Any]:
    name = call.args.text("experiment_name")
    with call.stores.metadata.read() as conn:
        row = _row_by_name(conn, name)
    if row is None:
        raise missing(f"Could not find experiment with name '{name}'")
    return {"experiment": to_json(row)}


_NAME_FILTER = re.compile(
    r"\s*(?:attributes?\.)?(?P<attr>name|experiment_id)\s*(?P<op>=|!=|LIKE|ILIKE)\s*"
    r"(?:'(?P<sq>[^']*)'|\"(?P<dq>[^\"]*)\")\s*",
    re.IGNORECASE,
)


def _stage_condition(view: str) -> Any:
    view = (view or "ACTIVE_ONLY").upper()
    if view == "ALL":
        return None
    if view not in ("ACTIVE_ONLY", "DELETED_ONLY"):
        raise invalid(f"view_type {view!r} is not ACTIVE_ONLY, DELETED_ONLY or ALL")
    return _E.lifecycle_stage == ("active" if view == "ACTIVE_ONLY" else "deleted")


@endpoint("GET", f"{V2}/experiments/search", "read")
@endpoint("POST", f"{V2}/experiments/search", "read")
def search(call: Call) -> dict[str, Any]:
    conditions = []
    stage = _stage_condition(call.args.get("view_type", "ACTIVE_ONLY"))
    if stage is not None:
        conditions.append(stage)
    text = call.args.text("filter", required=False)
    if text:
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            m = _NAME_FILTER.fullmatch(part)
            if m is None:
                raise invalid(
                    f"cannot parse experiment filter {part!r}; the server supports "
                    "name = / != / LIKE / ILIKE 'VALUE'"
                )
            column = _E.name if m["attr"].lower() == "name" else cast(_E.experiment_id, String)
            value = m["sq"] if m["sq"] is not None else m["dq"]
            op = m["op"].upper()
            conditions.append(
                column == value
                if op == "="
                else column != value
                if op == "!="
                else column.like(value)
                if op == "LIKE"
                else func.lower(column).like(value.lower())
            )
    limit = call.args.integer("max_results", 1000, low=1)
    offset = page_token(call.args.get("page_token"))
    order = [_E.updated_at.desc(), _E.experiment_id.desc()]
    for clause in call.args.items("order_by"):
        field, _, direction = str(clause).strip().partition(" ")
        order_column: Any = {
            "name": _E.name,
            "experiment_id": _E.experiment_id,
            "creation_time": _E.created_at,
            "last_update_time": _E.updated_at,
        }.get(field.removeprefix("attributes.").removeprefix("attribute."))
        if order_column is None:
            raise invalid(f"cannot order experiments by {field!r}")
        order.insert(
            0, order_column.desc() if direction.strip().upper() == "DESC" else order_column.asc()
        )
    stmt = select(t.experiments).where(*conditions).order_by(*order).offset(offset).limit(limit + 1)
    with call.stores.metadata.read() as conn:
        rows = conn.execute(stmt).all()
    return page("experiments", [to_json(r) for r in rows], offset, limit)


def _touch(call: Call, value: Any, **changes: Any) -> None:
    with call.stores.metadata.write() as conn:
        row = row_by_id(conn, value)
        if "name" in changes and changes["name"] != row.name:
            if _row_by_name(conn, changes["name"]) is not None:
                raise exists(f"Experiment '{changes['name']}' already exists.")
            conn.execute(
                t.runs.update()
                .where(t.runs.c.experiment == row.name)
                .values(experiment=changes["name"])
            )
        if "tags" in changes:
            changes["tags"] = changes["tags"](dict(row.tags or {}))
        conn.execute(
            t.experiments.update()
            .where(_E.experiment_id == row.experiment_id)
            .values(updated_at=_time.now_us(), **changes)
        )


@endpoint("POST", f"{V2}/experiments/update", "track")
def update(call: Call) -> dict[str, Any]:
    _touch(call, call.args.text("experiment_id"), name=_check_name(call.args.text("new_name")))
    return {}


def _lifecycle(call: Call, stage: str) -> dict[str, Any]:
    """Delete or restore an experiment with its runs, as MLflow's SQL store does: deleting
    marks its active runs deleted at the same moment, and restoring brings back exactly
    those (a run deleted on its own before stays deleted)."""
    now = _time.now_us()
    runs = t.runs.c
    with call.stores.metadata.write() as conn:
        row = row_by_id(conn, call.args.text("experiment_id"))
        if row.lifecycle_stage == stage:
            return {}
        of_it = runs.experiment == row.name
        if stage == "deleted":
            conn.execute(
                t.runs.update().where(of_it, runs.deleted_at.is_(None)).values(deleted_at=now)
            )
        else:
            conn.execute(
                t.runs.update()
                .where(of_it, runs.deleted_at == row.updated_at)
                .values(deleted_at=None)
            )
        conn.execute(
            t.experiments.update()
            .where(_E.experiment_id == row.experiment_id)
            .values(lifecycle_stage=stage, updated_at=now)
        )
    return {}


@endpoint("POST", f"{V2}/experiments/delete", "track")
def delete(call: Call) -> dict[str, Any]:
    if experiment_id(call.args.text("experiment_id")) == 0:
        raise invalid("Cannot delete the default experiment '0'.")
    return _lifecycle(call, "deleted")


@endpoint("POST", f"{V2}/experiments/restore", "track")
def restore(call: Call) -> dict[str, Any]:
    return _lifecycle(call, "active")


@endpoint("POST", f"{V2}/experiments/set-experiment-tag", "track")
def set_tag(call: Call) -> dict[str, Any]:
    key, value = call.args.text("key"), str(call.args.get("value", ""))
    _touch(call, call.args.text("experiment_id"), tags=lambda tags: {**tags, key: value})
    return {}


@endpoint("POST", f"{V2}/experiments/delete-experiment-tag", "track")
def delete_tag(call: Call) -> dict[str, Any]:
    key = call.args.text("key")
    _touch(
        call,
        call.args.text("experiment_id"),
        tags=lambda tags: {k: v for k, v in tags.items() if k != key},
    )
    return {}
