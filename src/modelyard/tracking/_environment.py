"""What a run captures about where it ran: code version, Python, packages, platform."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Packages whose versions decide whether a model trained here loads and behaves the
# same elsewhere; the rest of the environment is too noisy to be useful.
KEY_PACKAGES = (
    "modelyard",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "torch",
    "lightgbm",
    "xgboost",
    "onnxruntime",
    "cloudpickle",
)


@functools.cache
def package_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_commit(folder: str) -> str | None:
    """The commit checked out in ``folder``'s repository, with ``-dirty`` if files changed.

    Not cached: in a notebook or a sweep the checkout changes between runs of one
    process, and a stale commit is wrong lineage (two ``git`` calls cost ~5 ms).
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    suffix = "-dirty" if dirty.stdout.strip() else ""
    return head.stdout.strip() + suffix


@functools.cache
def _static_environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "executable": sys.executable,
        "packages": package_versions(),
    }


def capture(folder: str | Path) -> tuple[dict[str, Any], str | None]:
    """(environment, git commit) for a run started in ``folder``."""
    return dict(_static_environment()), git_commit(str(Path(folder).resolve()))
