"""Where shipped prediction-log parts live: a local folder or object storage (fsspec).

A part is one immutable Parquet file named by a key relative to the store's root
(``model=M/date=D/NAME.parquet``). The store offers five primitives: put a part whole (from
a table or a file), list keys under a prefix, read parts, delete parts. Everything else (what a part
holds, when it is written, how readers combine parts) is the log's business
(``_log.py``), so a third store needs only these five.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from modelyard._files import atomic_path, atomic_write_bytes
from modelyard._redact import redact
from modelyard.backends._fsspec import open_filesystem
from modelyard.errors import BackendUnavailableError, ConfigError


class PartStore(Protocol):
    url: str

    def put(self, key: str, table: pa.Table) -> None:
        """Write ``table`` as the part ``key``, whole or not at all (replacing one)."""

    def put_file(self, key: str, path: Path) -> None:
        """Move the Parquet file ``path`` in as the part ``key`` (``path`` is consumed)."""

    def keys(self, prefix: str = "") -> list[str]:
        """Every part key that starts with ``prefix``, sorted."""

    def read(
        self, keys: Sequence[str], columns: Sequence[str] | None = None
    ) -> dict[str, pa.Table]:
        """The parts ``keys`` by key; a key deleted meanwhile is left out."""

    def delete(self, keys: Sequence[str]) -> None:
        """Remove parts; a key already gone is not an error."""


def _encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _decode(data: bytes, columns: Sequence[str] | None) -> pa.Table:
    found = pq.read_table(pa.BufferReader(data), partitioning=None)
    if columns is None:
        return found
    return found.select([c for c in columns if c in found.column_names])


class LocalParts:
    """Parts in a folder; a put is a temporary file, fsynced, then renamed into place."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"LocalParts({self.url!r})"

    def put(self, key: str, table: pa.Table) -> None:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(final, _encode(table))

    def put_file(self, key: str, path: Path) -> None:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, final)
        except OSError:  # another file system: copy beside the target, then rename
            with atomic_path(final) as tmp:
                shutil.copyfile(path, tmp)
            path.unlink()

    def keys(self, prefix: str = "") -> list[str]:
        # Walk only the folders the prefix names, so one model's keys do not cost a walk
        # of every model's folders (nor of the spool that may share this folder).
        *folders, stem = prefix.split("/")
        base = self.root.joinpath(*folders)
        if not base.is_dir():
            return []
        found = []
        for child in base.iterdir():
            if not child.name.startswith(stem) or child.name.startswith("."):
                continue
            paths = child.rglob("*.parquet") if child.is_dir() else [child]
            for path in paths:
                if path.suffix == ".parquet" and not path.name.startswith("."):
                    found.append(path.relative_to(self.root).as_posix())
        return sorted(found)

    def read(
        self, keys: Sequence[str], columns: Sequence[str] | None = None
    ) -> dict[str, pa.Table]:
        tables = {}
        for key in keys:
            try:
                tables[key] = _decode((self.root / key).read_bytes(), columns)
            except FileNotFoundError:  # merged away by compaction since it was listed
                continue
        return tables

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            (self.root / key).unlink(missing_ok=True)


class FsspecParts:
    """Parts on object storage (``s3://bucket/prefix``): a PUT is atomic there."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        self.storage_options = storage_options
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:
        return f"FsspecParts({redact(self.url)!r})"

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs, self._root = open_filesystem(self.url, self.storage_options)
        return self._fs

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def put(self, key: str, table: pa.Table) -> None:
        self.fs.pipe_file(self._path(key), _encode(table))

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return BackendUnavailableError(
            f"the prediction log at {redact(self.url)} did not answer ({redact(reason)}); "
            "check that the store is up, and predictions.url and predictions.endpoint_url"
        )

    def put_file(self, key: str, path: Path) -> None:
        self.fs.put_file(str(path), self._path(key))
        path.unlink()

    def keys(self, prefix: str = "") -> list[str]:
        fs = self.fs
        head, _, _ = prefix.rpartition("/")
        base = self._path(head) if head else self._root
        fs.invalidate_cache()  # other replicas add parts: never trust a cached listing
        try:
            paths = fs.find(base)
        except FileNotFoundError:
            return []
        except Exception as exc:  # a store that is down: one line, not a traceback
            raise self._unavailable(exc) from None
        cut = len(self._root) + 1 if self._root else 0
        keys = [p[cut:] for p in paths if p.endswith(".parquet")]
        return sorted(k for k in keys if k.startswith(prefix))

    def read(
        self, keys: Sequence[str], columns: Sequence[str] | None = None
    ) -> dict[str, pa.Table]:
        if not keys:
            return {}
        paths = {self._path(k): k for k in keys}
        # One concurrent fetch for all parts (s3fs runs the GETs in parallel). The listing
        # cache would hide parts added since it was filled, so it goes first.
        self.fs.invalidate_cache()
        try:
            found = self.fs.cat(list(paths), on_error="return")
        except Exception as exc:
            raise self._unavailable(exc) from None
        tables = {}
        for path, data in found.items():
            if isinstance(data, FileNotFoundError):
                continue  # merged away by compaction since it was listed
            if isinstance(data, BaseException):  # a failed GET must not pass for fewer rows
                raise self._unavailable(data) from None
            if path in paths:
                tables[paths[path]] = _decode(data, columns)
        return tables

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            paths = [self._path(k) for k in keys]
            try:
                self.fs.rm(paths)
            except FileNotFoundError:
                pass


SCHEMES: dict[str, Callable[..., PartStore]] = {
    "file": lambda url, **kw: LocalParts(url.split("://", 1)[1]),
    "s3": FsspecParts,
    "gs": FsspecParts,
    "az": FsspecParts,
    "memory": FsspecParts,
}


def open_parts(url: str, **storage_options: Any) -> PartStore:
    """The part store for ``url``: a folder path, ``file://``, ``s3://`` (…)."""
    if "://" not in url:
        return LocalParts(url)
    scheme, rest = url.split("://", 1)
    factory = SCHEMES.get(scheme)
    if factory is not None and not rest.strip("/"):
        raise ConfigError(
            f"predictions URL {url!r} names no bucket or folder; write {scheme}://BUCKET/PREFIX"
        )
    if factory is None:
        raise ConfigError(
            f"predictions URL {url!r} has unknown scheme {scheme!r}; "
            f"use a local folder or one of: {', '.join(s + '://' for s in SCHEMES)}"
        )
    return factory(url, **storage_options)
