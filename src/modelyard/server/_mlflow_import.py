"""Copy an MLflow tracking store into a workspace: ``modelyard import mlflow --from URI``.

The store is read through MLflow's own client (``MlflowClient(tracking_uri=URI)``), so
every kind of store MLflow reads is a source: a ``./mlruns`` folder, ``sqlite:///…``,
``postgresql://…``, or a running ``http://`` server. That needs the ``mlflow`` package
(``pip install modelyard[mlflow]``, the client alone). Runs keep their ids, names,
times, status and every metric's whole history; artifacts are copied into the
content-addressed store; registered models keep their version numbers where the
workspace has none of its own, their tags and aliases.

Idempotent: each run is one transaction, skipped when its id is already in the
workspace; each version remembers what it was imported from (``lineage["mlflow"]
["imported"]``) and is not copied twice. An import stopped half-way (killed, a network
error) is finished by running it again.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from modelyard import _time
from modelyard._redact import redact
from modelyard.backends.artifacts import put_tree
from modelyard.backends.metadata import tables as t
from modelyard.errors import BackendUnavailableError, ConfigError
from modelyard.registry import META_FILE
from modelyard.tracking import store_metrics

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

Progress = Callable[[str, int, int], None]  # (what, done, total)
PAGE = 1000


@dataclass
class ImportSummary:
    experiments: int = 0
    runs: int = 0
    runs_skipped: int = 0
    metric_points: int = 0
    artifacts: int = 0
    models: int = 0
    versions: int = 0
    versions_skipped: int = 0
    aliases: int = 0
    renumbered: dict[str, int] = field(default_factory=dict)  # "name/old" -> new number
    # "name@alias" -> (the workspace's version, the store's): an alias the workspace has
    # already is never moved by an import (a server may be following it).
    aliases_kept: dict[str, tuple[int, int]] = field(default_factory=dict)


def _client(uri: str) -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError(
            "importing from MLflow needs the mlflow client: pip install 'modelyard[mlflow]'"
        ) from None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def check_source(uri: str) -> str:
    """``uri`` if it names a store that exists: MLflow's client would make an empty one in
    place of a mistyped folder or SQLite file, and the import would copy nothing."""
    scheme = uri.split(":", 1)[0] if "://" in uri or uri.startswith("file:") else ""
    if scheme in ("", "file"):
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
        if not folder.is_dir():
            raise ConfigError(
                f"--from {uri}: no such folder; give an MLflow store (./mlruns, "
                "sqlite:///mlflow.db, postgresql://…, http://host:5000)"
            )
        # MLflow 3 reads folder stores only when asked to (they are in maintenance mode).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return str(folder.resolve())
    if scheme == "sqlite":
        path = uri.split("sqlite:///", 1)[-1]
        if path not in ("", ":memory:") and not Path(path).is_file():
            raise ConfigError(f"--from {uri}: no such SQLite file ({path})")
    elif scheme not in ("http", "https", "databricks"):
        _reach_database(uri)  # MLflow would retry a wrong database for minutes
    return uri


def _reach_database(uri: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(uri, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except Exception as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
        raise BackendUnavailableError(
            f"cannot read the MLflow store at {redact(uri)}: {redact(reason)[:300]}"
        ) from None
    finally:
        engine.dispose()


def _pages(call: Callable[..., Any], **kw: Any) -> Iterator[Any]:
    token = None
    while True:
        page = call(max_results=PAGE, page_token=token, **kw)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def import_mlflow(ws: Workspace, uri: str, *, progress: Progress | None = None) -> ImportSummary:
    """Copy the MLflow store at ``uri`` into ``ws`` (what is already there is skipped)."""
    # MLflow's own stores use APIs their dependencies deprecate (SQLAlchemy's noload, the
    # file store's notice): the user can do nothing about those, so they are not shown.
    # MLflow calls that take no URI (a model's download) use MLflow's default store, a
    # ./mlflow.db it would create: pointed at the source for the import's duration.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    source = check_source(uri)
    os.environ.update(MLFLOW_TRACKING_URI=source, MLFLOW_REGISTRY_URI=source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return _import(ws, source, progress)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _import(ws: Workspace, uri: str, progress: Progress | None) -> ImportSummary:
    from mlflow.entities import ViewType

    summary = ImportSummary()
    say = progress or (lambda what, done, total: None)
    try:
        client = _client(uri)
        experiments = list(_pages(client.search_experiments, view_type=ViewType.ALL))
    except Exception as exc:  # MLflow's, SQLAlchemy's, a driver's: the store is unreadable
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailableError(
            f"cannot read the MLflow store at {redact(uri)}: {redact(reason)[:300]}; check "
            "the URI (./mlruns, sqlite:///mlflow.db, http://host:5000)"
        ) from None
    names = {}
    for exp in experiments:
        names[exp.experiment_id] = exp.name
        _experiment(ws, exp)
        summary.experiments += 1
    runs = (
        list(_pages(client.search_runs, experiment_ids=list(names), run_view_type=ViewType.ALL))
        if names
        else []
    )
    with ws.metadata.read() as conn:
        have = set(conn.execute(select(t.runs.c.run_id)).scalars())
    for n, run in enumerate(runs, 1):
        if run.info.run_id in have:
            summary.runs_skipped += 1
        else:
            _run(ws, client, run, names[run.info.experiment_id], summary)
            summary.runs += 1
        say("runs", n, len(runs))
    models = list(_pages(client.search_registered_models))
    for n, model in enumerate(models, 1):
        _model(ws, client, model, summary, uri)
        summary.models += 1
        say("models", n, len(models))
    return summary


def _experiment(ws: Workspace, exp: Any) -> None:
    now = _time.now_us()
    row = {
        "name": exp.name,
        "lifecycle_stage": exp.lifecycle_stage,
        "tags": dict(exp.tags or {}),
        "created_at": (exp.creation_time or now // 1000) * 1000,
        "updated_at": (exp.last_update_time or now // 1000) * 1000,
    }
    with ws.metadata.write() as conn:
        ws.metadata.insert_missing(conn, t.experiments, [row], keys=("name",))


def _run(ws: Workspace, client: Any, run: Any, experiment: str, summary: ImportSummary) -> None:
    info, data = run.info, run.data
    history = []
    for key in data.metrics:
        for point in client.get_metric_history(info.run_id, key):
            history.append(
                {
                    "run_id": info.run_id,
                    "key": key,
                    "value": None if point.value != point.value else point.value,
                    "step": int(point.step),
                    "timestamp": int(point.timestamp) * 1000,
                }
            )
    with tempfile.TemporaryDirectory(prefix="modelyard-import-") as scratch:
        files = _download(client, info.run_id, Path(scratch))
        stored = [
            {
                "run_id": info.run_id,
                "path": rel,
                "digest": ws.artifacts.put_file(path),
                "size": path.stat().st_size,
                "kind": "file",
            }
            for rel, path in files
        ]
    datasets = []
    for item in getattr(run.inputs, "dataset_inputs", None) or []:
        d = item.dataset
        tags = [{"key": tag.key, "value": tag.value} for tag in item.tags]
        datasets.append(
            {
                "run_id": info.run_id,
                "name": d.name[:250],
                "fingerprint": d.digest[:80],
                "context": next(
                    (x["value"] for x in tags if x["key"] == "mlflow.data.context"), ""
                )[:50],
                "num_rows": None,
                "schema": {
                    "mlflow": {
                        "tags": tags,
                        "dataset": {
                            "name": d.name,
                            "digest": d.digest,
                            "source_type": d.source_type,
                            "source": d.source,
                            "schema": d.schema,
                            "profile": d.profile,
                        },
                    }
                },
            }
        )
    start = info.start_time or 0
    with ws.metadata.write() as conn:
        from modelyard.tracking import ensure_experiment

        ensure_experiment(ws.metadata, conn, experiment)
        conn.execute(
            t.runs.insert(),
            {
                "run_id": info.run_id,
                "experiment": experiment,
                "name": (info.run_name or info.run_id)[:250],
                "status": str(info.status).lower(),
                "start_time": start * 1000,
                "end_time": None if info.end_time is None else info.end_time * 1000,
                "user_id": (info.user_id or "")[:250] or None,
                "deleted_at": None
                if info.lifecycle_stage == "active"
                else (info.end_time or start) * 1000,
                "git_commit": (data.tags.get("mlflow.source.git.commit") or "")[:64] or None,
                "environment": {},
            },
        )
        for table, values in ((t.params, data.params), (t.tags, data.tags)):
            if values:
                conn.execute(
                    table.insert(),
                    [{"run_id": info.run_id, "key": k, "value": v} for k, v in values.items()],
                )
        for start_at in range(0, len(history), 5000):
            store_metrics(ws.metadata, conn, history[start_at : start_at + 5000])
        if stored:
            conn.execute(t.run_artifacts.insert(), stored)
        if datasets:
            ws.metadata.upsert(
                conn,
                t.run_datasets,
                list({d["name"]: d for d in datasets}.values()),
                keys=("run_id", "name"),
                update=("fingerprint", "context", "num_rows", "schema"),
            )
    summary.metric_points += len(history)
    summary.artifacts += len(stored)


def _download(client: Any, run_id: str, into: Path) -> list[tuple[str, Path]]:
    """Every artifact file of the run, downloaded: (its path in the run, the local copy)."""
    out: list[tuple[str, Path]] = []
    pending = [""]
    while pending:
        folder = pending.pop()
        for entry in client.list_artifacts(run_id, folder or None):
            if entry.is_dir:
                pending.append(entry.path)
            else:
                local = Path(client.download_artifacts(run_id, entry.path, str(into)))
                out.append((entry.path, local))
    return sorted(out)


def _model(ws: Workspace, client: Any, model: Any, summary: ImportSummary, source: str) -> None:
    import mlflow.artifacts

    from modelyard.server._model_versions import mlflow_signature_of

    name = model.name
    now = _time.now_us()
    with ws.metadata.write() as conn:
        ws.metadata.insert_missing(
            conn,
            t.registered_models,
            [
                {
                    "name": name,
                    "description": model.description or "",
                    "latest_version": 0,
                    "created_at": (model.creation_timestamp or now // 1000) * 1000,
                    "updated_at": (model.last_updated_timestamp or now // 1000) * 1000,
                    "tags": dict(model.tags or {}),
                }
            ],
            keys=("name",),
        )
        done = {
            (r.lineage or {}).get("mlflow", {}).get("imported"): r.version
            for r in conn.execute(
                select(t.model_versions.c.version, t.model_versions.c.lineage).where(
                    t.model_versions.c.name == name
                )
            )
        }
        have_runs = set(conn.execute(select(t.runs.c.run_id)).scalars())
    numbers: dict[str, int] = {}
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    for v in versions:
        marker = f"{name}/{v.version}@{v.creation_timestamp}"
        if marker in done:
            numbers[str(v.version)] = done[marker]
            summary.versions_skipped += 1
            continue
        with tempfile.TemporaryDirectory(prefix="modelyard-import-") as scratch:
            uri = client.get_model_version_download_uri(name, v.version)
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=scratch, tracking_uri=source, registry_uri=source
                )
            )
            signature = mlflow_signature_of(
                (local / "MLmodel").read_bytes() if (local / "MLmodel").exists() else None
            )
            run_id = v.run_id if v.run_id in have_runs else None
            if (local / META_FILE).exists():  # logged by modelyard (a team server's version)
                meta = json.loads((local / META_FILE).read_text())
            else:
                meta = {
                    "flavor": "mlflow",
                    "settings": {},
                    "signature": signature,
                    "run_id": run_id,
                }
                (local / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            artifact, _size = put_tree(ws.artifacts, local)
        tags = dict(v.tags or {})
        version = ws.registry.register_artifact(
            name,
            artifact,
            run_id=run_id,
            flavor=meta["flavor"],
            signature=meta["signature"],
            description=v.description or "",
            tags=tags,
            lineage={
                "mlflow": {
                    "source": v.source,
                    "model_id": getattr(v, "model_id", None),
                    "tags": tags,
                    "imported": marker,
                }
            },
        )
        numbers[str(v.version)] = version.version
        if str(version.version) != str(v.version):
            summary.renumbered[f"{name}/{v.version}"] = version.version
        summary.versions += 1
    here = _aliases_of(ws, name)
    for alias, old in (model.aliases or {}).items():
        new = numbers.get(str(old))
        if new is None or here.get(alias) == new:
            continue
        if alias in here:  # the workspace moved it itself: a server may follow it
            summary.aliases_kept[f"{name}@{alias}"] = (here[alias], new)
            continue
        ws.registry.set_alias(name, alias, new)
        summary.aliases += 1


def _aliases_of(ws: Workspace, name: str) -> dict[str, int]:
    with ws.metadata.read() as conn:
        a = t.model_aliases.c
        return {
            r.alias: r.version
            for r in conn.execute(select(a.alias, a.version).where(a.name == name))
        }


__all__ = ["ImportSummary", "import_mlflow"]
