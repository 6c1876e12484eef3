"""A blueprint quickstart's record of its finished steps (``.modelyard/NAME/state.json``),
and the ``anchor`` day it writes into ``modelyard.toml`` on its first run.

The record holds the settings that shaped the steps (``fixed()``): a later run with other
values is refused, rather than mixing results made with both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from modelyard._files import atomic_write_text
from modelyard.blueprints._settings import write_setting
from modelyard.errors import ConfigError

S = TypeVar("S")


def state_path(root: Path, blueprint: str) -> Path:
    return root / ".modelyard" / blueprint / "state.json"


def load_state(root: Path, blueprint: str, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The steps done in this workspace; refused where the settings that shaped them have
    changed since (their results would be mixed with new ones)."""
    path = state_path(root, blueprint)
    if not path.is_file():
        return {"settings": dict(fixed)}
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    before = state.get("settings", {})
    changed = [k for k in fixed if k in before and before[k] != fixed[k]]
    if changed:
        was = ", ".join(f"{k} = {_toml(before[k])}" for k in changed)
        given = ", ".join(_toml(fixed[k]) for k in changed)
        raise ConfigError(
            f"this workspace was set up with {was} (now {given}); put that back in "
            "[blueprint], or run the blueprint in a new folder"
        )
    return state


def save_state(root: Path, blueprint: str, state: Mapping[str, Any]) -> None:
    path = state_path(root, blueprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state, indent=2, default=str))


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value[:10]}"' if value[:4].isdigit() else f'"{value}"'
    return str(value)


def with_anchor(
    root: Path,
    blueprint: str,
    table: Mapping[str, Any],
    parse: Callable[[Mapping[str, Any]], S],
    why: str,
    future: str,
) -> S:
    """The settings of ``table``, with ``anchor`` (today) written into ``modelyard.toml``
    if it has none and the workspace was not set up with another one; an anchor in the
    future is refused, saying ``future`` (why the blueprint needs a past one)."""
    if table.get("anchor"):
        settings = parse(table)
    else:
        path = state_path(root, blueprint)
        if path.is_file():
            was = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
            if was.get("anchor"):
                raise ConfigError(
                    f"modelyard.toml has no blueprint.anchor, and this workspace was set up "
                    f'with anchor = "{was["anchor"][:10]}"; put that line back under [blueprint]'
                )
        anchor = datetime.now(UTC).strftime("%Y-%m-%d")
        settings = parse({**table, "anchor": anchor})
        write_setting(root, blueprint, "anchor", anchor, why)
    day = getattr(settings, "anchor", None)
    if day is not None and day > datetime.now(UTC):
        raise ConfigError(
            f"blueprint.anchor {day:%Y-%m-%d} is in the future: {future}; give today or an "
            "earlier day"
        )
    return settings
