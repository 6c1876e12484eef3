"""Copy one model version, with its files and metadata, from one registry into another.

A container image carries exactly the version it serves and nothing else of the
workspace it came from: its own registry with one model, one version (under the same
number, so that every answer names the version the source registry knows) and the
alias the image was built for. The version's run row comes along because versions
refer to runs by foreign key; the version's lineage (git commit, seed, data sets) is
stored with it, and the run's own metrics, parameters and other artifacts stay behind.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.errors import ConflictError, IntegrityError
from modelyard.registry._refs import ModelRef
from modelyard.registry._registry import META_FILE, Registry
from modelyard.registry._versions import ModelVersion

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore


def export_version(source: Registry, ref: str | ModelRef, target: Registry) -> ModelVersion:
    """Copy the version ``ref`` names (and its alias, if ``ref`` names one) into ``target``.

    ``target`` must not hold that model yet. Files are copied first, rows in one
    transaction after, so a failure leaves ``target`` without the model.
    """
    parsed = ModelRef.parse(ref) if isinstance(ref, str) else ref
    version = source.get(parsed)
    source.check_seal(version)  # what is copied is what was registered
    copy_tree(source.artifacts, version.artifact, target.artifacts)
    with source.metadata.read() as conn:
        model = conn.execute(
            select(t.registered_models).where(t.registered_models.c.name == version.name)
        ).one()
        version_row = conn.execute(
            select(t.model_versions).where(
                t.model_versions.c.name == version.name,
                t.model_versions.c.version == version.version,
            )
        ).one()
        run_row = None
        if version.run_id is not None:
            run_row = conn.execute(select(t.runs).where(t.runs.c.run_id == version.run_id)).first()
    now = _time.now_us()
    with target.metadata.write() as conn:
        taken = conn.execute(
            select(t.registered_models.c.name).where(t.registered_models.c.name == version.name)
        ).first()
        if taken is not None:
            raise ConflictError(
                f"model '{version.name}' is already registered in the target registry; "
                "export into a fresh workspace"
            )
        if run_row is not None and not _has_run(conn, run_row.run_id):
            conn.execute(t.runs.insert(), dict(run_row._mapping))
        conn.execute(
            t.registered_models.insert(),
            {
                **model._mapping,
                # The only version here; the next registration in the copy gets the
                # following number, never one the source already used.
                "latest_version": version.version,
            },
        )
        # Sealed again with the copy's own key: the source's key stays with the source.
        seal = target.seal_of(version.name, version.version, version.artifact)
        conn.execute(t.model_versions.insert(), {**version_row._mapping, "seal": seal})
        if parsed.alias is not None:
            conn.execute(
                t.model_aliases.insert(),
                {
                    "name": version.name,
                    "alias": parsed.alias,
                    "version": version.version,
                    "updated_at": now,
                },
            )
            # The alias history starts here, so that a rollback inside the copy finds
            # no earlier version instead of one that is not there.
            conn.execute(
                t.model_alias_events.insert(),
                {
                    "name": version.name,
                    "alias": parsed.alias,
                    "kind": "set",
                    "version": version.version,
                    "at": now,
                },
            )
    return target.get(parsed)


def _has_run(conn: Connection, run_id: str) -> bool:
    return (
        conn.execute(select(t.runs.c.run_id).where(t.runs.c.run_id == run_id)).first() is not None
    )


def flavor_settings(registry: Registry, version: ModelVersion) -> dict[str, Any]:
    """What the version's flavor stored beside its files to load them (``runtime``, ``file``…)."""
    manifest = json.loads(registry.artifacts.get(version.artifact))
    entry = manifest.get("files", {}).get(META_FILE)
    if entry is None:
        raise IntegrityError(f"artifact {version.artifact} is not a logged model (no {META_FILE})")
    settings: dict[str, Any] = json.loads(registry.artifacts.get(entry["digest"])).get(
        "settings", {}
    )
    return settings


def copy_tree(source: ArtifactStore, digest: str, target: ArtifactStore) -> int:
    """Copy a folder artifact (its manifest and every file) between stores; return bytes."""
    raw = source.get(digest)
    manifest: dict[str, Any] = json.loads(raw)
    if manifest.get("kind") != "tree":
        raise IntegrityError(f"artifact {digest} is not a folder manifest")
    total = 0
    with tempfile.TemporaryDirectory(prefix="modelyard-export-") as tmp:
        for i, entry in enumerate(manifest["files"].values()):
            # Through a local file rather than memory: model files can be gigabytes.
            local = Path(tmp) / str(i)
            source.get_file(entry["digest"], local)
            _check(target.put_file(local), entry["digest"])
            total += local.stat().st_size
            local.unlink()
    # The manifest goes last: a reader of the target never sees a folder without files.
    _check(target.put(raw), digest)
    return total


def _check(got: str, want: str) -> None:
    if got != want:
        raise IntegrityError(f"artifact {want} was stored as {got}; the source store is damaged")
