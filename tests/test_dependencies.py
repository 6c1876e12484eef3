"""Every third-party package that modelyard's code imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normalize(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def imported_modules() -> dict[str, str]:
    """Top-level third-party module -> one file of ``src/modelyard`` that imports it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src" / "modelyard").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "modelyard":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_dependency_or_in_an_extra() -> None:
    everything = declared(PROJECT["dependencies"])
    for requirements in PROJECT["optional-dependencies"].values():
        everything |= declared(requirements)
    providers = packages_distributions()

    undeclared = {
        module: where
        for module, where in imported_modules().items()
        # 'sklearn' is provided by scikit-learn, 'google' by protobuf, …
        if not {normalize(d) for d in providers.get(module, [module])} & everything
    }

    assert undeclared == {}


def test_build_tools_and_the_feature_store_engine_are_not_run_time_dependencies() -> None:
    base = declared(PROJECT["dependencies"])

    assert {"grpcio-tools", "duckdb"} & base == set()
    assert declared(PROJECT["optional-dependencies"]["features"]) == {"duckdb"}
