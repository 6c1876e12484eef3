"""modelyard's own client API on the team server (``/api/modelyard/v1``).

A workspace whose metadata.url names this server calls ``/call/TARGET/METHOD`` with its
arguments (``modelyard.remote``'s codec), and the server runs the same method on its own
stores: ``run_store`` (a run's writes), ``tracking`` (``ws.runs``) and ``registry``.
Only the methods in ``CALLS`` exist, each with the permission it needs; a run's writes
are checked for their shape here, since a client could otherwise name any column.
Artifacts move by digest: ``PUT`` checks the body against the digest before keeping it,
``GET`` streams the stored copy (which the client checks as it arrives).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.remote import API, decode, encode
from modelyard.security import acting_as
from modelyard.server._endpoints import Stores
from modelyard.server._guard import actor_of
from modelyard.tracking import SqlRunStore, Tracking

_RUN_COLUMNS = frozenset(
    {
        "run_id",
        "experiment",
        "name",
        "status",
        "start_time",
        "lease_until",
        "seed",
        "git_commit",
        "environment",
    }
)
_END_COLUMNS = frozenset({"status", "end_time", "error", "git_commit"})
_METRIC = frozenset({"run_id", "key", "value", "step", "timestamp"})
_ARTIFACT = frozenset({"run_id", "path", "digest", "size", "kind"})
_DATASET = frozenset({"run_id", "name", "fingerprint", "context", "num_rows", "schema"})

CALLS: dict[tuple[str, str], str] = {
    **{
        ("run_store", m): "track"
        for m in (
            "start",
            "add_params",
            "set_tags",
            "write_metrics",
            "renew",
            "end",
            "record_artifact",
            "log_dataset",
        )
    },
    **{("tracking", m): "read" for m in ("get", "search", "history", "experiments", "fail_lapsed")},
    **{
        ("registry", m): "read"
        for m in (
            "get",
            "versions",
            "list",
            "rollback_target",
            "alias_history",
            "check_seal",
            "traffic",
        )
    },
    ("registry", "register"): "track",
    ("registry", "register_artifact"): "track",
    **{
        ("registry", m): "admin"
        for m in ("set_alias", "rollback", "move_alias", "delete_alias", "seal_version")
    },
}


def _shape(row: Any, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(row, Mapping) or not set(row) <= allowed:
        raise InvalidInputError(f"{what} has fields this server does not take: {row!r:.200}")
    return dict(row)


class CheckedRunStore:
    """``SqlRunStore`` behind checks of what a client sends."""

    def __init__(self, stores: Stores) -> None:
        self._sql = SqlRunStore(stores.metadata)
        self._artifacts = stores.artifacts

    def start(self, row: Any, params: Any, tags: Any) -> None:
        row = _shape(row, _RUN_COLUMNS, "a run")
        if row.get("status") != "running":
            raise InvalidInputError("a run starts as running")
        self._sql.start(row, _strings(params, "params"), _strings(tags, "tags"))

    def add_params(self, run_id: str, params: Any) -> None:
        self._sql.add_params(str(run_id), _strings(params, "params"))

    def set_tags(self, run_id: str, tags: Any) -> None:
        self._sql.set_tags(str(run_id), _strings(tags, "tags"))

    def write_metrics(self, rows: Any) -> None:
        self._sql.write_metrics(_metric_rows(rows))

    def renew(self, run_id: str, lease_until: int) -> None:
        self._sql.renew(str(run_id), int(lease_until))

    def end(self, run_id: str, rows: Any, values: Any) -> None:
        self._sql.end(str(run_id), _metric_rows(rows), _shape(values, _END_COLUMNS, "a run's end"))

    def record_artifact(self, row: Any) -> None:
        row = _shape(row, _ARTIFACT, "an artifact")
        if not self._artifacts.exists(str(row.get("digest"))):
            raise NotFoundError(
                f"artifact {row.get('digest')} is not on this server; upload it first"
            )
        self._sql.record_artifact(row)

    def log_dataset(self, row: Any) -> None:
        self._sql.log_dataset(_shape(row, _DATASET, "a dataset"))


def _strings(values: Any, what: str) -> dict[str, str]:
    if not isinstance(values, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise InvalidInputError(f"{what} must map strings to strings")
    return dict(values)


def _metric_rows(rows: Any) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        raise InvalidInputError("metrics come as a list of rows")
    return [_shape(r, _METRIC, "a metric") for r in rows]


def targets(stores: Stores) -> dict[str, Any]:
    return {
        "run_store": CheckedRunStore(stores),
        "tracking": Tracking(stores.metadata),
        "registry": stores.registry,
    }


def permission_of(target: str, method: str) -> str | None:
    return CALLS.get((target, method))


def call(objects: dict[str, Any], target: str, method: str, body: bytes, key: Any) -> bytes:
    try:
        data = orjson.loads(body or b"{}")
        args, kwargs = decode(data.get("args", [])), decode(data.get("kwargs", {}))
    except (orjson.JSONDecodeError, AttributeError):
        raise InvalidInputError(
            "the call's body is not the JSON modelyard's client sends"
        ) from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidInputError("the call's args must be a list and kwargs an object")
    with acting_as(actor_of(key)):
        result = getattr(objects[target], method)(*args, **kwargs)
    return orjson.dumps({"result": encode(result)})


# -- artifacts ---------------------------------------------------------------------------------
def _check_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise InvalidInputError(f"{digest!r} is not an artifact digest; expected sha256:<64 hex>")
    return digest


async def has_blob(stores: Stores, digest: str) -> Response:
    found = await run_in_threadpool(stores.artifacts.exists, _check_digest(digest))
    return Response(status_code=200 if found else 404)


async def get_blob(stores: Stores, digest: str) -> Response:
    _check_digest(digest)
    if not await run_in_threadpool(stores.artifacts.exists, digest):
        raise NotFoundError(f"artifact {digest} is not on this server")
    fd, scratch = stores.staging("modelyard-blob-")
    os.close(fd)
    try:
        await run_in_threadpool(stores.artifacts.get_file, digest, scratch)  # checked
    except BaseException:
        os.unlink(scratch)
        raise

    def chunks() -> Any:
        try:
            with open(scratch, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk
        finally:
            os.unlink(scratch)

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"Content-Length": str(os.path.getsize(scratch))},
    )


async def put_blob(stores: Stores, digest: str, request: Request) -> Response:
    _check_digest(digest)
    fd, scratch = stores.staging("modelyard-blob-")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                h.update(chunk)
                out.write(chunk)
        if "sha256:" + h.hexdigest() != digest:
            raise InvalidInputError(
                f"the upload does not match {digest} (it hashes to sha256:{h.hexdigest()}); "
                "it was damaged on the way: send it again"
            )
        await run_in_threadpool(stores.artifacts.put_file, scratch)
    finally:
        os.unlink(scratch)
    return Response(b"{}", media_type="application/json")


__all__ = ["API", "CALLS", "call", "get_blob", "has_blob", "permission_of", "put_blob", "targets"]
