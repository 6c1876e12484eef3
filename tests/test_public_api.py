"""Each capability has one public door: a sorted ``__all__`` whose names all exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

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


def _type_checking_block(module: Any) -> tuple[set[tuple[str, str, str]], set[str]]:
    """The ``if TYPE_CHECKING:`` block: its imports as (module, name, public name), and
    the names it only annotates (``__version__: str``)."""
    tree = ast.parse(Path(module.__file__).read_text())
    imports: set[tuple[str, str, str]] = set()
    annotated: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    imports |= {(stmt.module, a.name, a.asname or a.name) for a in stmt.names}
                elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    annotated.add(stmt.target.id)
    return imports, annotated


def _lazy_table(module: Any) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for source, entries in module._EXPORTS.items():
        for entry in entries:
            original, _, public = entry.partition(" as ")
            found.add((source, original, public or original))
    return found


LAZY = [name for name in PACKAGES if hasattr(importlib.import_module(name), "_EXPORTS")]


def test_the_root_and_the_heavy_capabilities_load_lazily() -> None:
    assert set(LAZY) >= {
        "modelyard",
        "modelyard.features",
        "modelyard.jobs",
        "modelyard.monitoring",
        "modelyard.release",
        "modelyard.serving",
        "modelyard.tracking",
    }


@pytest.mark.parametrize("name", LAZY)
def test_lazy_names_are_the_ones_type_checkers_see(name: str) -> None:
    module = importlib.import_module(name)
    imports, annotated = _type_checking_block(module)

    lazy = _lazy_table(module)

    assert {entry for entry in lazy if entry[2] not in annotated} == imports
    assert {public for *_, public in lazy} == set(module.__all__)


def test_jobs_exports_the_type_that_ctx_progress_returns() -> None:
    """Job code can annotate what ``ctx.progress`` gives with a public name."""
    from datetime import datetime

    from modelyard.jobs import JobContext, Progress

    ctx = JobContext("n", "r", datetime.now(), datetime.now(), 1, ".")

    with ctx.progress(3) as progress:
        assert isinstance(progress, Progress)
