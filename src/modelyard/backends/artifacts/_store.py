"""A content-addressed artifact store over any fsspec filesystem.

Objects live at ``ROOT/sha256/ab/abcdef…``: the same bytes are stored once, a
digest names exactly one content, and a reader can verify what it got. Writes are
atomic: object stores publish a PUT whole; local folders write a temporary file in
the same directory and rename it (``LocalArtifactStore``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from modelyard._files import atomic_path, atomic_write_bytes
from modelyard._redact import redact
from modelyard.backends._fsspec import open_filesystem
from modelyard.errors import (
    BackendUnavailableError,
    IntegrityError,
    InvalidInputError,
    ModelyardError,
    NotFoundError,
)

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
    """Artifacts on an fsspec filesystem (s3://, gs://, memory:// …).

    ``s3://KEY:SECRET@bucket/prefix`` passes the key and secret to s3fs (the ``AWS_*``
    environment variables serve as well). A store that fails (unreachable, refused) is a
    one-line ``BackendUnavailableError``; no message or repr shows a credential.
    """

    _remote = True  # errors of the file system are the store's, not the local disk's

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        self.storage_options = storage_options
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs, self._root = open_filesystem(self.url, self.storage_options)
        return self._fs

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except (ModelyardError, FileNotFoundError):
            raise
        except Exception as exc:
            if not self._remote:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendUnavailableError(
                f"the artifact store at {redact(self.url)} failed: {redact(reason)}; check that "
                "it is reachable and that artifacts.url, artifacts.endpoint_url and the "
                "credentials are right"
            ) from None

    def _key(self, digest: str) -> str:
        hexpart = _hex(digest)
        self.fs  # noqa: B018 - resolves self._root
        return f"{self._root}/sha256/{hexpart[:2]}/{hexpart}"

    def exists(self, digest: str) -> bool:
        with self._reaching():
            return bool(self.fs.exists(self._key(digest)))

    def put(self, data: bytes) -> str:
        digest = digest_bytes(data)
        with self._reaching():
            key = self._key(digest)
            if not self.fs.exists(key):
                self._write_bytes(key, data)
        return digest

    def put_file(self, path: str | Path) -> str:
        digest = digest_file(path)
        with self._reaching():
            key = self._key(digest)
            if not self.fs.exists(key):
                self._write_file(key, Path(path))
        return digest

    def get(self, digest: str) -> bytes:
        with self._reaching():
            key = self._key(digest)
            try:
                data: bytes = self.fs.cat_file(key)
            except FileNotFoundError:
                raise self._missing(digest) from None
        if digest_bytes(data) != digest:
            raise self._damaged(digest)
        return data

    def get_file(self, digest: str, dest: str | Path) -> None:
        """Copy an artifact to a local path (atomically, verified)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        with atomic_path(dest) as tmp, self._reaching():
            with self._open_read(digest) as src, open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if "sha256:" + h.hexdigest() != digest:
                raise self._damaged(digest)

    def _open_read(self, digest: str) -> BinaryIO:
        key = self._key(digest)
        try:
            fh: BinaryIO = self.fs.open(key, "rb")
        except FileNotFoundError:
            raise self._missing(digest) from None
        return fh

    def _missing(self, digest: str) -> NotFoundError:
        return NotFoundError(
            f"artifact {digest} is not in the store at {redact(self.url)}; "
            "it was never written or the store was cleaned"
        )

    def _damaged(self, digest: str) -> IntegrityError:
        return IntegrityError(
            f"artifact {digest} in {redact(self.url)} does not match its digest; "
            "the stored copy is damaged: re-log it from its source"
        )

    # Object stores make a PUT visible whole, so writing the final key is atomic.
    def _write_bytes(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(key, data)

    def _write_file(self, key: str, path: Path) -> None:
        self.fs.put_file(str(path), key)


class LocalArtifactStore(FsspecArtifactStore):
    """Artifacts in a local folder: written atomically (``modelyard._files``)."""

    _remote = False

    def _write_bytes(self, key: str, data: bytes) -> None:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(key, data)

    def _write_file(self, key: str, path: Path) -> None:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(key) as tmp:
            shutil.copyfile(path, tmp)
