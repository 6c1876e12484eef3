"""Each capability has one public door: a sorted ``__all__`` whose names all exist."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "modelyard",
    "modelyard.contracts",
    "modelyard.tracking",
    "modelyard.features",
    "modelyard.registry",
    "modelyard.serving",
    "modelyard.backends.metadata",
    "modelyard.backends.artifacts",
    "modelyard.backends.online",
    "modelyard.backends.executors",
    "modelyard.backends.predictions",
    "modelyard.monitoring",
    "modelyard.release",
    "modelyard.jobs",
    "modelyard.blueprints",
    "modelyard.blueprints.sentiment",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_unique_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)

    exported = module.__all__

    assert exported, f"{name}.__all__ is empty"
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("name", PACKAGES)
def test_star_import_gives_exactly_all(name: str) -> None:
    namespace: dict[str, object] = {}

    exec(f"from {name} import *", namespace)  # noqa: S102 - the import is the test

    assert sorted(k for k in namespace if k != "__builtins__") == sorted(
        importlib.import_module(name).__all__
    )
