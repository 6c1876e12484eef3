"""Resource use the blueprints record with a trained model: the process's peak memory."""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Start a new high-water mark of this process's memory (Linux: ``clear_refs`` 5), so
    that ``peak_rss_mb`` measures what comes next: the second model trained in a process
    is not charged with the first one's peak. False where the platform cannot."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:
    """The peak resident memory of this *process* (its high-water mark) since the last
    ``reset_peak_rss``, or since it started, in MiB.

    Not the training's own increase: the memory the process held before counts too. None
    where the platform has no ``resource`` module (Windows).
    """
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):  # the mark clear_refs resets
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)
