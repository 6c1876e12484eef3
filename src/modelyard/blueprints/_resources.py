"""Resource use the blueprints record with a trained model: the process's peak memory."""

from __future__ import annotations

import sys


def peak_rss_mb() -> float | None:
    """The peak resident memory of this *process* so far (its high-water mark), in MiB.

    Not the training's own increase: a process that held more before training reports
    that. None where the platform has no ``resource`` module (Windows).
    """
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)
