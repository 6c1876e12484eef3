"""What a run captures about where it ran: code version, Python, packages, platform."""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from modelyard.tracking._git import GitProbe

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


def capture(folder: str | Path) -> tuple[dict[str, Any], GitProbe]:
    """(environment, code version probe) for a run started in ``folder``."""
    return dict(_static_environment()), GitProbe.start(folder)
