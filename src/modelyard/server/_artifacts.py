"""MLflow's proxied artifact API over modelyard's content-addressed store.

An MLflow client writes each file of a run (or of an MLflow 3 logged model) with a PUT to
``/api/2.0/mlflow-artifacts/artifacts/EXP/RUN/artifacts/PATH`` (or
``EXP/models/MODEL/artifacts/PATH``). The body streams to a temporary file while it is
hashed, is stored once by its digest, and the run's ``run_artifacts`` row (the logged
model's ``logged_model_files`` row) names it: the same row ``modelyard runs show`` lists.
A folder that modelyard itself logged (a model, a tree) is listed and read file by file
through its manifest, so an MLflow client downloads modelyard's models too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from modelyard.backends.metadata import tables as t
from modelyard.server._endpoints import ARTIFACTS, V2, Call, Stores, endpoint
from modelyard.server._errors import invalid, missing
from modelyard.server._runs import run_row

SMALL = 16 << 20  # files up to this size are answered from memory, larger ones from disk


@dataclass(frozen=True)
class Owner:
    """Whose artifact a path names: a run's or a logged model's."""

    kind: str  # "run" or "model"
    id: str
    rel: str  # the path inside the owner's artifact root ("" for the root)


def owner_of(path: str) -> Owner:
    parts = PurePosixPath(path.strip("/")).parts
    if ".." in parts or any(p.startswith("/") for p in parts):
        raise invalid(f"artifact path {path!r} may not leave its folder")
    if len(parts) >= 3 and parts[2] == "artifacts" and parts[1] != "models":
        return Owner("run", parts[1], "/".join(parts[3:]))
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        return Owner("model", parts[2], "/".join(parts[4:]))
    raise invalid(
        f"artifact path {path!r} is not EXPERIMENT/RUN_ID/artifacts/… or "
        "EXPERIMENT/models/MODEL_ID/artifacts/…: use the artifact_uri the server gave"
    )


def owner_files(stores: Stores, conn: Any, owner: Owner) -> dict[str, tuple[str, int]]:
    """Every file the owner holds: path -> (digest, size); folders expanded."""
    if owner.kind == "model":
        f = t.logged_model_files.c
        exists_row = conn.execute(
            select(t.logged_models.c.model_id).where(t.logged_models.c.model_id == owner.id)
        ).first()
        if exists_row is None:
            raise missing(f"Logged model with ID '{owner.id}' not found.")
        rows = conn.execute(select(f.path, f.digest, f.size).where(f.model_id == owner.id))
        return {r.path: (r.digest, r.size) for r in rows}
    run_row(conn, owner.id)
    a = t.run_artifacts.c
    out: dict[str, tuple[str, int]] = {}
    for r in conn.execute(select(a.path, a.digest, a.size, a.kind).where(a.run_id == owner.id)):
        if r.kind == "file":
            out[r.path] = (r.digest, r.size)
            continue
        manifest = json.loads(stores.artifacts.get(r.digest))
        for rel, entry in manifest.get("files", {}).items():
            out[f"{r.path}/{rel}"] = (entry["digest"], int(entry.get("size") or 0))
    return out


def listing(stores: Stores, owner: Owner) -> list[dict[str, Any]]:
    """Entries directly under ``owner.rel``: names relative to it, folders first as MLflow."""
    with stores.metadata.read() as conn:
        files = owner_files(stores, conn, owner)
    prefix = owner.rel.strip("/")
    if prefix in files:
        return []  # a file, not a folder: MLflow answers an empty listing
    lead = f"{prefix}/" if prefix else ""
    entries: dict[str, dict[str, Any]] = {}
    for path, (_digest, size) in files.items():
        if not path.startswith(lead):
            continue
        head, _, rest = path[len(lead) :].partition("/")
        if rest:
            entries.setdefault(head, {"path": head, "is_dir": True})
        else:
            entries[head] = {"path": head, "is_dir": False, "file_size": size}
    return [entries[k] for k in sorted(entries)]


async def download(stores: Stores, path: str) -> Response:
    from starlette.concurrency import run_in_threadpool

    owner = owner_of(path)

    def find() -> tuple[str, int]:
        with stores.metadata.read() as conn:
            found = owner_files(stores, conn, owner).get(owner.rel)
        if found is None:
            raise missing(f"artifact {owner.rel!r} does not exist in {owner.kind} {owner.id}")
        return found

    digest, size = await run_in_threadpool(find)
    media = "application/octet-stream"
    if size <= SMALL:
        data = await run_in_threadpool(stores.artifacts.get, digest)  # checked against digest
        return Response(data, media_type=media)
    fd, scratch = stores.staging("modelyard-download-")
    os.close(fd)
    await run_in_threadpool(stores.artifacts.get_file, digest, scratch)
    return FileResponse(scratch, media_type=media, background=BackgroundTask(os.unlink, scratch))


async def upload(stores: Stores, path: str, request: Request) -> Response:
    """Stream the body to a temporary file, store it by digest, then name it."""
    from starlette.concurrency import run_in_threadpool

    owner = owner_of(path)
    if not owner.rel:
        raise invalid(f"artifact path {path!r} names a folder; PUT a file under it")
    if len(owner.rel) > 500:
        raise invalid(f"artifact path has {len(owner.rel)} characters; the limit is 500")
    fd, scratch = stores.staging("modelyard-upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                out.write(chunk)
        digest = await run_in_threadpool(stores.artifacts.put_file, scratch)
    finally:
        os.unlink(scratch)
    await run_in_threadpool(_record, stores, owner, digest, size)
    return Response(b"{}", media_type="application/json")


def _record(stores: Stores, owner: Owner, digest: str, size: int) -> None:
    metadata = stores.metadata
    with metadata.write() as conn:
        if owner.kind == "run":
            run_row(conn, owner.id, active=True)
            row = {
                "run_id": owner.id,
                "path": owner.rel,
                "digest": digest,
                "size": size,
                "kind": "file",
            }
            metadata.upsert(
                conn,
                t.run_artifacts,
                [row],
                keys=("run_id", "path"),
                update=("digest", "size", "kind"),
            )
        else:
            owner_files(stores, conn, owner)  # the logged model exists
            row = {"model_id": owner.id, "path": owner.rel, "digest": digest, "size": size}
            metadata.upsert(
                conn,
                t.logged_model_files,
                [row],
                keys=("model_id", "path"),
                update=("digest", "size"),
            )


def delete(stores: Stores, path: str) -> dict[str, Any]:
    owner = owner_of(path)
    with stores.metadata.write() as conn:
        if owner.kind == "run":
            a = t.run_artifacts.c
            gone = conn.execute(
                t.run_artifacts.delete().where(
                    a.run_id == owner.id, (a.path == owner.rel) | a.path.like(f"{owner.rel}/%")
                )
            ).rowcount
        else:
            f = t.logged_model_files.c
            gone = conn.execute(
                t.logged_model_files.delete().where(
                    f.model_id == owner.id, (f.path == owner.rel) | f.path.like(f"{owner.rel}/%")
                )
            ).rowcount
    if not gone:
        raise missing(f"artifact {owner.rel!r} does not exist in {owner.kind} {owner.id}")
    return {}


@endpoint("GET", ARTIFACTS, "read")
def list_proxied(call: Call) -> dict[str, Any]:
    path = call.args.text("path", required=False)
    if not path:
        return {"files": []}
    return {"files": listing(call.stores, owner_of(path))}


@endpoint("GET", f"{V2}/artifacts/list", "read")
def list_run(call: Call) -> dict[str, Any]:
    """The tracking API's listing: paths relative to the run's artifact root."""
    run_id = call.args.text("run_id", "run_uuid")
    rel = call.args.text("path", required=False).strip("/")
    with call.stores.metadata.read() as conn:
        row = run_row(conn, run_id)
        experiment = (
            conn.execute(
                select(t.experiments.c.experiment_id).where(t.experiments.c.name == row.experiment)
            ).scalar()
            or 0
        )
    entries = listing(call.stores, Owner("run", run_id, rel))
    for e in entries:
        e["path"] = f"{rel}/{e['path']}" if rel else e["path"]
    return {"root_uri": f"mlflow-artifacts:/{experiment}/{run_id}/artifacts", "files": entries}
