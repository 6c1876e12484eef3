"""Whether a file descriptor is a regular file on a local disk: a write to it returns in
microseconds (into the page cache), so the event loop may make it itself.

The prediction log (``_segments.py``) writes each answered request's line before the
answer leaves. Handing that write to a thread costs two thread wake-ups, about 150-200 us
a request on a small VM, where the ``write()`` itself into the page cache costs under
1 us. A write can only hang on a file system that waits for something else: a network
or FUSE file system, or a pipe or socket in the file's place. So the loop writes itself
only to a regular file on one of the local file system types below, checked per write
with one ``fstat`` (a descriptor can be replaced under the writer); anything else goes
to the writer thread, whose hung write is bounded by ``write_timeout_s``.

The type comes from ``/proc/self/mountinfo`` (Linux; elsewhere nothing counts as local
and every write takes the thread). Written by hand: neither ``os`` nor ``psutil`` maps a
device number to its file system type.
"""

from __future__ import annotations

import os
import stat

# Block-device and memory file systems whose writes complete into the page cache (overlay:
# a container's root, over one of these).
LOCAL_TYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "bcachefs", "overlay"}
)

_types: dict[int, str | None] = {}  # st_dev: its file system type (None: not found)


def is_local_file(fd: int) -> bool:
    """A regular file on a local file system (see the module docstring)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    kind = _types.get(info.st_dev, "")
    if kind == "":
        kind = _types[info.st_dev] = _type_of(info.st_dev)
    return kind in LOCAL_TYPES


def _type_of(device: int) -> str | None:
    """The type of the mounted file system with ``device``, from /proc/self/mountinfo."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                # ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE ...
                if len(fields) > 4 and fields[2] == wanted and "-" in fields[6:]:
                    return fields[fields.index("-", 6) + 1]
    except OSError:
        return None
    return None
