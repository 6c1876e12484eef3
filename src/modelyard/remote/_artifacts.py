"""Artifacts through the team server: the ``ArtifactStore`` protocol over HTTP.

The server keeps the same content-addressed store (sha256 digests) that a direct client
writes; uploads are checked against their digest by the server, downloads by the
client as they arrive, so a damaged copy is never used by either side.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from modelyard.backends.artifacts import digest_bytes, digest_file
from modelyard.remote._client import TeamClient


class HttpArtifactStore:
    def __init__(self, client: TeamClient) -> None:
        self.client = client
        self.url = f"{client.url}/api/modelyard/v1/artifacts"

    def __repr__(self) -> str:
        return f"HttpArtifactStore({self.client.url!r})"

    def exists(self, digest: str) -> bool:
        return self.client.has_blob(digest)

    def put(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if not self.client.has_blob(digest):
            with tempfile.NamedTemporaryFile(prefix="modelyard-put-") as tmp:
                tmp.write(data)
                tmp.flush()
                self.client.put_blob(digest, Path(tmp.name))
        return digest

    def put_file(self, path: str | Path) -> str:
        digest = digest_file(path)
        if not self.client.has_blob(digest):
            self.client.put_blob(digest, Path(path))
        return digest

    def get(self, digest: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="modelyard-get-") as folder:
            target = Path(folder) / "blob"
            self.client.get_blob(digest, target)
            return target.read_bytes()

    def get_file(self, digest: str, dest: str | Path) -> None:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.client.get_blob(digest, dest)
