"""Blueprints: reference applications, each a workspace template that runs end to end.

``modelyard init --blueprint NAME DIR`` copies a blueprint's ``template/`` folder into
``DIR``; ``modelyard quickstart --blueprint NAME`` then trains, registers and serves
its model. A blueprint is a package ``modelyard.blueprints.NAME`` that offers:

- ``template/``: the files of a new workspace (at least ``modelyard.toml``, with a
  ``[blueprint]`` table whose ``name`` is the blueprint's);
- ``check_table(section, source)``: validates that ``[blueprint]`` table, one-line
  ``ConfigError`` per mistake (``config.py`` calls it when the file is read);
- ``quickstart(ws, progress=None, **options) -> QuickstartResult``: the one-command
  pipeline; ``options`` are the command line's blueprint options it declares as
  keyword arguments (``simulate_days``, ``executor``), and no others.

Adding one is one line in ``BLUEPRINTS``.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from importlib.resources.abc import Traversable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict

from modelyard._files import atomic_path
from modelyard.config import register_table
from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelyard.registry import ModelVersion
    from modelyard.workspace import Workspace

__all__ = [
    "BLUEPRINTS",
    "QuickstartResult",
    "blueprint_names",
    "check_blueprint_table",
    "ensure_workspace",
    "quickstart_of",
    "write_template",
]

BLUEPRINTS: dict[str, str] = {
    "churn": "modelyard.blueprints.churn",
    "featurestore": "modelyard.blueprints.featurestore",
    "images": "modelyard.blueprints.images",
    "recommendations": "modelyard.blueprints.recommendations",
    "sentiment": "modelyard.blueprints.sentiment",
}
"""Blueprint name -> the package that holds it."""

_CONFIG_FILE = "modelyard.toml"  # config.CONFIG_FILE; not imported, config imports us


class QuickstartResult(TypedDict):
    """What a blueprint's quickstart returns, for the command line to print and serve."""

    model: str  # registered model name
    alias: str  # the alias the server follows ("production")
    version: ModelVersion
    run_id: str
    summary: str  # one line: the held-out metrics in words
    example: dict[str, Any]  # one real request record, for the curl line
    failed: NotRequired[int]  # job runs that failed (a pipeline's): the command exits 1
    more: NotRequired[list[dict[str, Any]]]  # other models served beside it: model, alias, example
    reads: NotRequired[list[str]]  # other GET paths to try on the server (a read API)
    spec: NotRequired[str]  # a serve spec (TOML, relative to the workspace) to serve with


class Quickstart(Protocol):
    def __call__(
        self, ws: Workspace, progress: Progress | None = None, **options: Any
    ) -> QuickstartResult: ...


def blueprint_names() -> list[str]:
    """The known blueprints, sorted."""
    return sorted(BLUEPRINTS)


def _module(name: str) -> ModuleType:
    if name not in BLUEPRINTS:
        raise ConfigError(
            f"unknown blueprint {name!r}; known blueprints: {', '.join(blueprint_names())}"
        )
    return importlib.import_module(BLUEPRINTS[name])


def quickstart_of(name: str) -> Quickstart:
    """The quickstart pipeline of blueprint ``name``."""
    function: Quickstart = _module(name).quickstart
    return function


def check_blueprint_table(section: Any, source: str) -> str:
    """Validate a ``[blueprint]`` table; return the blueprint's name."""
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"{source}: 'blueprint' must be a table: [blueprint] name = "
            f"one of {', '.join(repr(n) for n in blueprint_names())}"
        )
    name = section.get("name")
    if not isinstance(name, str) or name not in BLUEPRINTS:
        raise ConfigError(
            f"{source}: blueprint.name = {name!r} is not a blueprint; "
            f"known blueprints: {', '.join(blueprint_names())}"
        )
    check: Callable[[Mapping[str, Any], str], object] = _module(name).check_table
    check(section, source)
    return name


register_table("blueprint", lambda body, source, root: check_blueprint_table(body, source))


def _template_files(root: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            files.update(_template_files(entry, f"{prefix}{entry.name}/"))
        else:
            files[prefix + entry.name] = entry.read_bytes()
    return files


def _existing_blueprint(path: Path) -> str | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: cannot parse TOML ({exc}); fix the syntax") from None
    table = data.get("blueprint")
    name = table.get("name") if isinstance(table, dict) else None
    return name if isinstance(name, str) else None


def _refuse_other(name: str, config: Path) -> None:
    existing = _existing_blueprint(config)
    if existing != name:
        what = "no [blueprint] table" if existing is None else f"blueprint {existing!r}"
        raise ConfigError(
            f"{config} already exists and holds {what}, not the {name!r} blueprint; "
            f"create the blueprint in a new folder: modelyard init --blueprint {name} DIR"
        )


def ensure_workspace(name: str, folder: str | os.PathLike[str]) -> list[Path]:
    """Write blueprint ``name``'s template where ``folder`` has no ``modelyard.toml``;
    otherwise check that the workspace there is this blueprint's. Returns what was written."""
    _module(name)
    config = Path(folder) / _CONFIG_FILE
    if config.exists():
        _refuse_other(name, config)
        return []
    return write_template(name, folder)[0]


def write_template(name: str, folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """Write blueprint ``name``'s template into ``folder``; return (written, kept) paths.

    Files already there are kept, never overwritten. A ``modelyard.toml`` that is not
    this blueprint's is refused before anything is written; every new file is written
    to a temporary name first and renamed, so a failure leaves no half-written file.
    """
    from importlib.resources import files

    module = _module(name)
    root = Path(folder)
    config = root / _CONFIG_FILE
    if config.exists():
        _refuse_other(name, config)
    template = _template_files(files(module.__name__) / "template")
    if _CONFIG_FILE not in template:  # a packaging mistake, not the user's
        raise ConfigError(f"blueprint {name!r} ships no template/{_CONFIG_FILE}; reinstall it")
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    kept: list[Path] = []
    try:
        # Every file is staged before the first rename: a failure leaves none of them.
        with ExitStack() as staged:
            for relative, content in template.items():
                target = root / relative
                if target.exists():
                    kept.append(target)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                staged.enter_context(atomic_path(target)).write_bytes(content)
                written.append(target)
    except OSError as exc:
        raise ConfigError(f"cannot write the {name!r} template into {root}: {exc}") from None
    return written, kept
