"""One quickstart of a workspace at a time: two would run the same steps side by side."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelyard.errors import ConflictError


@contextmanager
def only_one(root: Path, blueprint: str) -> Iterator[None]:
    """Refuse a second quickstart of the workspace at ``root`` while one runs. The lock
    goes with its process, even after ``kill -9``."""
    import fcntl
    import os

    path = root / ".modelyard" / f"{blueprint}-quickstart.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConflictError(
                f"another quickstart of this workspace is running (process {other}); wait "
                "for it to end, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # and with it the lock
