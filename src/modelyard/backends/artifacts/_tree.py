"""Folders as artifacts: every file stored by content, plus a JSON manifest (path → digest).

A model folder is then one digest (the manifest's). Files shared between versions
are stored once, and a reader fetches a folder into a local cache keyed by digest.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from modelyard.backends.artifacts._store import digest_file
from modelyard.errors import IntegrityError

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore


def put_tree(store: ArtifactStore, folder: str | Path) -> tuple[str, int]:
    """Store every file under ``folder``; return (manifest digest, total bytes)."""
    root = Path(folder)
    files: dict[str, dict[str, object]] = {}
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size = path.stat().st_size
        files[path.relative_to(root).as_posix()] = {"digest": store.put_file(path), "size": size}
        total += size
    manifest = json.dumps({"kind": "tree", "files": files}, sort_keys=True).encode()
    return store.put(manifest), total


def get_tree(store: ArtifactStore, digest: str, cache: str | Path, *, verify: bool = False) -> Path:
    """Materialise the folder ``digest`` under ``cache`` (once) and return its path.

    ``verify`` checks a cached copy too: the manifest is read from the store (checked
    against ``digest``), and every cached file must have the digest it names and no
    file may be added, else ``IntegrityError`` (files fetched now are always checked).
    """
    target = Path(cache) / digest.replace(":", "-")
    if target.exists() and not verify:
        return target
    manifest = json.loads(store.get(digest))
    if manifest.get("kind") != "tree":
        raise IntegrityError(f"artifact {digest} is not a folder manifest")
    if target.exists():
        _check_copy(target, manifest["files"], digest)
        return target
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        for rel, entry in manifest["files"].items():
            parts = PurePosixPath(rel).parts
            if PurePosixPath(rel).is_absolute() or ".." in parts or not parts:
                raise IntegrityError(
                    f"folder manifest {digest} names the path {rel!r}, which leaves the "
                    "folder; the manifest was not written by modelyard: do not load it"
                )
            store.get_file(entry["digest"], staging / rel)
        staging.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(target)
        except OSError:
            if not target.exists():  # lost a race to another reader: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_copy(folder: Path, files: dict[str, dict[str, object]], digest: str) -> None:
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    extra = sorted(found - files.keys())
    for rel, entry in files.items():
        path = folder / rel
        if rel not in found or digest_file(path) != entry["digest"]:
            raise IntegrityError(
                f"the cached copy of artifact {digest} differs from the store at {rel}: "
                f"someone changed {path}; delete {folder} and load again"
            )
    if extra:
        raise IntegrityError(
            f"the cached copy of artifact {digest} holds files the store does not "
            f"({', '.join(extra)}): delete {folder} and load again"
        )


def check_stored_tree(store: ArtifactStore, digest: str) -> None:
    """Read every file of the folder ``digest`` from the store and check its digest
    (``IntegrityError`` at the first that differs); the local cache plays no part."""
    manifest = json.loads(store.get(digest))
    if manifest.get("kind") != "tree":
        raise IntegrityError(f"artifact {digest} is not a folder manifest")
    with tempfile.TemporaryDirectory(prefix="modelyard-check-") as scratch:
        for entry in manifest["files"].values():
            store.get_file(entry["digest"], Path(scratch) / "file")  # checks as it copies
