"""Helpers every benchmark shares. Standard library and NumPy only, so that the peer
workers (run in their own virtual environments) can import this file too."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 of durations in seconds, in milliseconds."""
    arr = np.array(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p99_ms": round(float(np.percentile(arr, 99)), 4),
    }


def timed(fn: Callable[[], Any], reads: int, warmup: int = 200) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``reads`` times timed; percentiles."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reads):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def machine(**versions: Any) -> dict[str, Any]:
    """The machine and the modelyard commit a result was measured on, plus ``versions``."""

    def git(*cmd: str) -> str:
        res = subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True)
        return res.stdout.strip()

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
        "modelyard_commit": git("rev-parse", "--short", "HEAD"),
        "modelyard_tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` figure in kB (``VmRSS``, ``VmHWM``), 0 where absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_section(path: Path, header: str, text: str) -> None:
    """Replace the ``header`` section of ``path`` (up to the next ``## ``), or append it."""
    old = path.read_text(encoding="utf-8")
    start = old.find("\n" + header + "\n")
    if start == -1:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        end = old.find("\n## ", start + 1)
        rest = "" if end == -1 else old[end:]
        new = old[: start + 1] + text.rstrip("\n") + "\n" + rest
    path.write_text(new, encoding="utf-8")
