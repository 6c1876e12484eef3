"""What every blueprint's settings need: the ``[blueprint]`` table checked by a pydantic
model with one-line errors, and a value the quickstart writes into ``modelyard.toml``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelyard._files import atomic_write_text
from modelyard.errors import ConfigError

Settings = TypeVar("Settings", bound=BaseModel)


def parse_table(model: type[Settings], section: Mapping[str, Any], source: str) -> Settings:
    """``section`` as ``model``; a mistake is one ``ConfigError`` naming its key, and an
    unknown key lists the keys of the table it is in."""
    try:
        return model.model_validate(dict(section))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        hint = ""
        # A validator's own ValueError: its message, without pydantic's "Value error, ".
        error = first.get("ctx", {}).get("error") if first["type"] == "value_error" else None
        message = str(error) if error is not None else first["msg"]
        if first["type"] == "extra_forbidden":
            keys = list(_table_at(model, first["loc"]).model_fields)
            message = "unknown key" + did_you_mean(str(first["loc"][-1]), keys)
            hint = f"; the keys are {', '.join(keys)}"
        where = f"blueprint.{key}: " if key else "blueprint: "
        raise ConfigError(f"{source}: {where}{message}{hint}") from None


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'seed'?)`` for the known name closest to a misspelt one, or ''."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def utc_day(value: Any) -> datetime:
    """A day of a blueprint's calendar (``YYYY-MM-DD``, TOML's date, or midnight with a
    zone) as midnight of that day; anything else raises ``ValueError`` (pydantic's one
    line). A day without a zone is a UTC day."""
    if not isinstance(value, str | date):  # a number would be read as epoch seconds
        raise ValueError(f"{value!r} is not a day; give one as YYYY-MM-DD")
    day: datetime = (
        datetime.fromisoformat(value)
        if isinstance(value, str)
        else value
        if isinstance(value, datetime)
        else datetime(value.year, value.month, value.day)  # TOML's 2026-01-01
    )
    if day.tzinfo is None:
        day = day.replace(tzinfo=UTC)
    if day.astimezone(UTC).time() != datetime.min.time():
        raise ValueError(f"{day.isoformat()} is not the start of a day; give a day as YYYY-MM-DD")
    return day


def _table_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model of the table holding the key at ``loc``: ``("costs", "missed")`` is a key
    of the nested table ``costs``, whose keys the hint must list."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        inner = None if field is None else field.annotation
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            break
        model = inner
    return model


def write_setting(root: Path, blueprint: str, key: str, value: str, why: str) -> None:
    """Put ``key = "value"  # why`` under ``[blueprint]``'s ``name = "BLUEPRINT"`` line of
    ``root/modelyard.toml`` (atomically), where the quickstart chose a value the jobs and
    later runs must read as well."""
    config = root / "modelyard.toml"
    text = config.read_text(encoding="utf-8")
    found = re.search(rf'^name = "{re.escape(blueprint)}"[^\n]*\n', text, flags=re.MULTILINE)
    if found is None:
        raise ConfigError(
            f"{config} has no 'name = \"{blueprint}\"' line under [blueprint] to put {key} "
            f'after; add {key} = "{value}" to [blueprint] yourself'
        )
    line = f'{key} = "{value}"  # {why}'
    atomic_write_text(config, text[: found.end()] + line + "\n" + text[found.end() :])


def require_extra(blueprint: str, modules: tuple[str, ...]) -> None:
    """One line naming the extra to install when a module ``blueprint`` needs is missing,
    before anything is read or written."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the {blueprint} blueprint needs {', '.join(missing)}; install its extra: "
            f"pip install 'modelyard[{blueprint}]'"
        )
