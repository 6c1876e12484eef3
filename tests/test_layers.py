"""DESIGN.md's layers hold: the import-linter contracts in pyproject.toml pass, and they
would catch each kind of leak (proved on a copy of the package with leaks put in)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import modelyard
from modelyard import config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(modelyard.__file__).resolve().parent  # the code the other tests import

# What DESIGN.md ("Capabilities and where they live") forbids, as strict as the project's
# before-stop hook, written out a second time so that a contract loosened by mistake fails
# here: package -> packages it must not import.
UPPER = {"serving", "monitoring", "jobs", "release", "cli", "blueprints", "ui"}
NEVER = {
    "config": UPPER | {"workspace", "features", "tracking", "registry"},
    "contracts": UPPER | {"workspace", "features", "tracking", "registry", "backends"},
    "backends": UPPER | {"workspace", "features", "tracking", "registry", "security"},
    "security": UPPER | {"workspace", "features", "tracking", "registry"},
    "features": UPPER | {"workspace", "tracking", "registry"},
    "tracking": UPPER | {"workspace", "registry"},
    "registry": UPPER | {"workspace"},
    "serving": {"monitoring", "jobs", "release", "cli", "blueprints", "ui"},
    "monitoring": {"jobs", "release", "cli", "blueprints", "ui"},
    "jobs": {"release", "cli", "blueprints", "ui"},
    "release": {"cli", "blueprints", "ui"},
    "blueprints": {"cli"},
    "ui": {"cli"},
}


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` with pyproject.toml's contracts on the modelyard found there."""
    command = Path(sys.executable).parent / "lint-imports"
    assert command.exists(), f"{command} is missing; install the test extra: pip install '.[test]'"
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(command), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_package_keeps_its_layers() -> None:
    result = lint_imports(PACKAGE.parent)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 broken." in result.stdout


@pytest.fixture(scope="module")
def leaky_copy(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the package with one leak of each kind put in."""
    parent = tmp_path_factory.mktemp("leaky")
    copy = parent / "modelyard"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for package, forbidden in NEVER.items():
        leak = "".join(f"import modelyard.{name}\n" for name in sorted(forbidden))
        folder = copy / package
        if folder.is_dir():
            (folder / "_leak.py").write_text(leak)
        else:  # a module (config.py): the leak goes at its end
            path = copy / f"{package}.py"
            path.write_text(path.read_text() + "\n" + leak)
    (copy / "cli" / "_private_leak.py").write_text("import modelyard.registry._registry\n")
    (copy / "vault").mkdir()  # a new capability that no layer places
    (copy / "vault" / "__init__.py").write_text("")
    return lint_imports(parent)


@pytest.mark.parametrize("package", sorted(NEVER))
def test_a_leak_to_a_higher_layer_is_caught(
    leaky_copy: subprocess.CompletedProcess[str], package: str
) -> None:
    assert leaky_copy.returncode != 0
    missed = [
        name
        for name in sorted(NEVER[package])
        if f"modelyard.{package} is not allowed to import modelyard.{name}:"
        not in leaky_copy.stdout
    ]
    assert missed == [], f"the contract lets {package} import {missed}:\n{leaky_copy.stdout}"


def test_an_import_of_another_capabilitys_private_module_is_caught(
    leaky_copy: subprocess.CompletedProcess[str],
) -> None:
    assert "- modelyard.cli._private_leak -> modelyard.registry._registry" in leaky_copy.stdout


def test_a_new_top_level_package_must_be_given_a_layer(
    leaky_copy: subprocess.CompletedProcess[str],
) -> None:
    unplaced = leaky_copy.stdout.split("The following modules are not listed as layers:")[-1]
    assert "- modelyard.vault\n" in unplaced, leaky_copy.stdout


def test_workspace_names_monitoring_only_for_types() -> None:
    # The contract ignores workspace -> monitoring because Workspace.alerting's return type
    # is monitoring's Alerting; at run time the workspace must not import monitoring.
    graph = grimp.build_graph("modelyard", exclude_type_checking_imports=True)

    assert not graph.direct_import_exists(
        importer="modelyard.workspace", imported="modelyard.monitoring", as_packages=True
    )


# A minimal valid body of each table section, as modelyard.toml would hold it.
TABLE_BODIES = {
    "alerts": "[alerts]\nrules = []\n",
    "blueprint": '[blueprint]\nname = "sentiment"\n',
    "jobs": "[jobs]\nmodules = []\n",
    "release": '[release]\ngates = ["accuracy >= 0.5"]\n',
}
OWNERS = {s: m.rsplit("._", 1)[0] for s, m in config.TABLE_OWNERS.items()}  # their packages


def test_every_table_section_has_a_body_here() -> None:
    assert sorted(TABLE_BODIES) == sorted(config.TABLE_OWNERS)


@pytest.mark.parametrize("section", [*sorted(TABLE_BODIES), None])
def test_a_table_is_checked_by_its_owner_which_loads_only_when_the_table_is_there(
    tmp_path: Path, section: str | None
) -> None:
    (tmp_path / config.CONFIG_FILE).write_text(TABLE_BODIES.get(section or "", "[serve]\n"))
    script = (
        "import sys\n"
        "from modelyard.config import load_config\n"
        f"print(sorted(load_config({str(tmp_path)!r}, environ={{}}).checked))\n"
        f"print([m for m in {sorted(set(OWNERS.values()))!r} if m in sys.modules])\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    checked, loaded = result.stdout.splitlines()
    if section is None:
        assert (checked, loaded) == ("[]", "[]")  # no table: no capability is imported for it
    else:
        assert checked == repr([section])  # the owner registered its check when imported
        assert OWNERS[section] in loaded
