"""Artifact back end: content-addressed (sha256) blobs on fsspec, chosen by URL.

A local folder (default) or any fsspec URL such as ``s3://bucket/prefix``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from modelyard._redact import redact
from modelyard.backends.artifacts._store import (
    FsspecArtifactStore,
    LocalArtifactStore,
    digest_bytes,
    digest_file,
)
from modelyard.backends.artifacts._tree import check_stored_tree, get_tree, put_tree
from modelyard.errors import ConfigError

__all__ = [
    "ArtifactStore",
    "SCHEMES",
    "check_stored_tree",
    "digest_bytes",
    "digest_file",
    "get_tree",
    "open_artifacts",
    "put_tree",
]


class ArtifactStore(Protocol):
    url: str

    def put(self, data: bytes) -> str: ...
    def put_file(self, path: str | Path) -> str: ...
    def get(self, digest: str) -> bytes: ...
    def get_file(self, digest: str, dest: str | Path) -> None: ...
    def exists(self, digest: str) -> bool: ...


SCHEMES: dict[str, Callable[..., FsspecArtifactStore]] = {
    "file": lambda url, **kw: LocalArtifactStore(url.split("://", 1)[1], **kw),
    "s3": FsspecArtifactStore,
    "gs": FsspecArtifactStore,
    "az": FsspecArtifactStore,
    "memory": FsspecArtifactStore,
}


def open_artifacts(url: str, **storage_options: Any) -> ArtifactStore:
    """Build the artifact store for ``url`` (a path, file://, s3://, gs://, az://, memory://)."""
    if "://" not in url:
        return LocalArtifactStore(str(Path(url).resolve()), **storage_options)
    scheme = url.split("://", 1)[0]
    factory = SCHEMES.get(scheme)
    if factory is None:
        raise ConfigError(
            f"artifacts URL {redact(url)!r} has unknown scheme {scheme!r}; "
            f"use a local path or one of: {', '.join(s + '://' for s in SCHEMES)}"
        )
    return factory(url, **storage_options)
