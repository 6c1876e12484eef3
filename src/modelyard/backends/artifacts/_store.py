"""A content-addressed artifact store over any fsspec filesystem.

Objects live at ``ROOT/sha256/ab/abcdef…``: the same bytes are stored once, a
digest names exactly one content, and a reader can verify what it got. Writes are
atomic: object stores publish a PUT whole; local folders write a temporary file in
the same directory and rename it (``LocalArtifactStore``).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from modelyard.errors import IntegrityError, InvalidInputError, NotFoundError

CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise InvalidInputError(f"{digest!r} is not an artifact digest; expected sha256:<64 hex>")
    return hexpart


class FsspecArtifactStore:
    """Artifacts on an fsspec filesystem (s3://, gs://, memory:// …)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        self.storage_options = storage_options
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            self._fs, self._root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return self._fs

    def _key(self, digest: str) -> str:
        hexpart = _hex(digest)
        self.fs  # noqa: B018 - resolves self._root
        return f"{self._root}/sha256/{hexpart[:2]}/{hexpart}"

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._key(digest)))

    def put(self, data: bytes) -> str:
        digest = digest_bytes(data)
        key = self._key(digest)
        if not self.fs.exists(key):
            self._write_bytes(key, data)
        return digest

    def put_file(self, path: str | Path) -> str:
        digest = digest_file(path)
        key = self._key(digest)
        if not self.fs.exists(key):
            self._write_file(key, Path(path))
        return digest

    def get(self, digest: str) -> bytes:
        key = self._key(digest)
        try:
            data: bytes = self.fs.cat_file(key)
        except FileNotFoundError:
            raise NotFoundError(
                f"artifact {digest} is not in the store at {self.url}; "
                "it was never written or the store was cleaned"
            ) from None
        if digest_bytes(data) != digest:
            raise IntegrityError(
                f"artifact {digest} in {self.url} does not match its digest; "
                "the stored copy is damaged: re-log it from its source"
            )
        return data

    def get_file(self, digest: str, dest: str | Path) -> None:
        """Copy an artifact to a local path (atomically, verified)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A unique name: two readers fetching to the same ``dest`` must not share one.
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
        h = hashlib.sha256()
        try:
            with self._open_read(digest) as src, open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if "sha256:" + h.hexdigest() != digest:
                raise IntegrityError(
                    f"artifact {digest} in {self.url} does not match its digest; "
                    "the stored copy is damaged: re-log it from its source"
                )
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)

    def _open_read(self, digest: str) -> BinaryIO:
        key = self._key(digest)
        try:
            fh: BinaryIO = self.fs.open(key, "rb")
        except FileNotFoundError:
            raise NotFoundError(
                f"artifact {digest} is not in the store at {self.url}; "
                "it was never written or the store was cleaned"
            ) from None
        return fh

    # Object stores make a PUT visible whole, so writing the final key is atomic.
    def _write_bytes(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(key, data)

    def _write_file(self, key: str, path: Path) -> None:
        self.fs.put_file(str(path), key)


class LocalArtifactStore(FsspecArtifactStore):
    """Artifacts in a local folder: write to a temporary name, then rename."""

    def _tmp(self, key: str) -> Path:
        target = Path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")

    def _write_bytes(self, key: str, data: bytes) -> None:
        tmp = self._tmp(key)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            tmp.replace(key)
        finally:
            tmp.unlink(missing_ok=True)

    def _write_file(self, key: str, path: Path) -> None:
        tmp = self._tmp(key)
        try:
            shutil.copyfile(path, tmp)
            tmp.replace(key)
        finally:
            tmp.unlink(missing_ok=True)
