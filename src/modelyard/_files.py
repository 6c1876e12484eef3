"""Atomic file writes: after a crash a reader finds the previous file or the new one, whole.

Every write goes to a temporary file with a unique name in the target's folder (so two
processes writing the same target never share one), is flushed and fsynced, replaces the
target with ``os.replace`` (atomic on POSIX and Windows), and then the folder is fsynced
so that the rename itself survives a power cut. On failure the temporary file is removed
and the previous file is left as it was.

Temporary names are hidden and end in ``.tmp`` (``.NAME.<hex>.tmp``): folder readers that
skip hidden files never see a half-written one.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_folder"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a path (``pq.write_table``).

    Write the whole file there inside the ``with``; on a clean exit it is fsynced and
    replaces ``path``. An exception removes it and leaves ``path`` untouched.
    """
    target = Path(path)
    tmp = _reserve(target)
    try:
        yield tmp
        _keep_mode(target, tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make the names in ``folder`` (a rename, a new file) durable; a no-op off POSIX."""
    if os.name != "posix":  # Windows cannot open a folder; its renames are journaled
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reserve(target: Path) -> Path:
    """Create an empty file with a unique name beside ``target``."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    # O_EXCL with mode 0o666 gets the umask's permissions, as a plain open() would:
    # mkstemp's 0o600 would quietly make every written file private.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


def _keep_mode(target: Path, tmp: Path) -> None:
    """A rewrite keeps the file's permissions: a private config stays private."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return
    os.chmod(tmp, mode)


def _fsync_file(path: Path) -> None:
    # The writer closed the file, which flushed its buffers to the OS; fsync pushes
    # the OS's copy to the disk before the rename makes it visible. (Windows fsyncs
    # only a handle open for writing; POSIX any, and a read-only file opens only so.)
    fd = os.open(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
