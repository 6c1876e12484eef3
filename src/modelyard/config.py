"""Settings: explicit argument > ``MODELYARD_*`` environment > ``modelyard.toml`` > default.

Each setting is declared once in ``SETTINGS`` (type, default, one-line doc). The
merge is one expression, and every value remembers where it came from so that
``modelyard config show`` and every error can name the source. A section that holds
tables ([alerts], [jobs.NAME] …) belongs to the capability that reads it, which
registers its check with ``register_table``.

Hand-written rather than pydantic-settings because we need the source of each
value, nearest-key suggestions for unknown keys, and a commented file template,
none of which it offers.
"""

from __future__ import annotations

import difflib
import importlib
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from modelyard._redact import redact_value
from modelyard._secrets import is_reference, resolve
from modelyard.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "SETTINGS",
    "Config",
    "Setting",
    "TableCheck",
    "load_config",
    "register_table",
    "render_template",
]

CONFIG_FILE = "modelyard.toml"
ENV_PREFIX = "MODELYARD_"
# Environment variables with our prefix that are not settings (so not "unknown").
# MODELYARD_ACTOR names who acts in the release record (a CI job names itself).
_NON_SETTING_ENV = frozenset({"MODELYARD_WORKSPACE", "MODELYARD_ACTOR"})


@dataclass(frozen=True)
class Setting:
    key: str  # "section.name", as in modelyard.toml
    type: type
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None  # inclusive range of a number

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "metadata.url",
        str,
        "sqlite:///.modelyard/meta.db",
        "metadata database: sqlite:///PATH (relative to the workspace) or postgresql://…",
    ),
    Setting(
        "artifacts.url",
        str,
        ".modelyard/artifacts",
        "artifact store: a local folder (relative to the workspace) or s3://bucket/prefix",
    ),
    Setting(
        "artifacts.endpoint_url",
        str,
        "",
        "endpoint of an S3-compatible server (MinIO, Ceph…); empty for AWS or local folders",
    ),
    Setting(
        "offline.path",
        str,
        ".modelyard/offline",
        "offline feature store: a folder of Parquet (relative to the workspace)",
    ),
    Setting(
        "online.url",
        str,
        "sqlite:///.modelyard/online.db",
        "online feature store: sqlite:///PATH (relative to the workspace) or redis://host:port/db",
    ),
    Setting(
        "predictions.url",
        str,
        ".modelyard/predictions",
        "prediction log: a local folder (relative to the workspace) or s3://bucket/prefix "
        "shared by every replica",
    ),
    Setting(
        "predictions.endpoint_url",
        str,
        "",
        "endpoint of the S3-compatible server of predictions.url; empty: artifacts.endpoint_url",
    ),
    Setting(
        "predictions.max_delay_s",
        float,
        10.0,
        "most seconds from an answered request to its row in the shared prediction log",
    ),
    Setting(
        "predictions.on_failure",
        str,
        "reject",
        "when the prediction log cannot write (full disk): reject (answer 503 "
        "prediction_log_unavailable, /readyz fails) or serve_unlogged (answer, unlogged)",
        choices=("reject", "serve_unlogged"),
    ),
    Setting(
        "monitoring.min_rows",
        int,
        200,
        "fewest logged rows in a window for drift to be judged (monitor drift, reports, "
        "alert rules, canary); fewer: not enough data",
    ),
    Setting(
        "monitoring.min_labels",
        int,
        100,
        "fewest labelled predictions for quality to be judged; fewer: not enough labels",
    ),
    Setting(
        "tracking.experiment",
        str,
        "default",
        "experiment that new runs belong to unless one is given",
    ),
    Setting(
        "tracking.lease_s",
        float,
        30.0,
        "a running run's process renews its lease every third of this; a run whose lease "
        "lapses (its process died) is marked failed",
    ),
    Setting(
        "executor.url",
        str,
        "local",
        "where jobs, batch scoring and backfills run: local (worker processes), "
        "ray (a local Ray instance) or ray://HOST:PORT (a Ray cluster)",
    ),
    Setting(
        "security.signing_key",
        str,
        "",
        "key that seals each registered model version (32+ characters; use env:NAME or "
        "file:/path, the same on every host of one registry); empty: a key file made in "
        ".modelyard/secrets",
    ),
    Setting(
        "security.pii_key",
        str,
        "",
        "key of the keyed hash of fields tagged pii (32+ characters; env:NAME or file:/path, "
        "the same on every replica); empty: a key file made in .modelyard/secrets",
    ),
    Setting(
        "server.api_key",
        str,
        "",
        "API key this workspace sends to the team server that metadata.url names "
        "(https://HOST:PORT); use env:NAME or file:/path",
    ),
    Setting("serve.host", str, "127.0.0.1", "address the model server binds to"),
    Setting("serve.port", int, 8000, "port the model server listens on", bounds=(1, 65535)),
    Setting(
        "serve.log_level",
        str,
        "info",
        "server log level",
        choices=("debug", "info", "warning", "error"),
    ),
)
_BY_KEY = {s.key: s for s in SETTINGS}
# A table section ([alerts], [jobs.NAME] …) holds tables rather than settings; the capability
# that owns it registers a check with ``register_table`` when it is imported.
TableCheck = Callable[[Any, str, Path], object]
"""``check(body, source, root)``: the parsed table, or a ConfigError naming ``source``."""
_CHECKS: dict[str, TableCheck] = {}
# Where each built-in table's check is registered. Module names, not imports: the owner is
# imported when its section is read, so a bad table fails the first command while config
# depends on no capability's code.
TABLE_OWNERS: dict[str, str] = {
    "alerts": "modelyard.monitoring._rules",  # [[alerts.rules]] and [alerts.sinks.NAME]
    "blueprint": "modelyard.blueprints",  # [blueprint] name = … and its settings
    "jobs": "modelyard.jobs._spec",  # [jobs.NAME] and jobs.modules
    "release": "modelyard.release._gates",  # [release] gates, [release.NAME], [release.canary]
}
_BY_ENV = {s.env: s for s in SETTINGS}


def register_table(section: str, check: TableCheck) -> None:
    """Declare ``[section]`` of ``modelyard.toml`` a table that ``check`` validates."""
    _CHECKS[section] = check


def _check_table(section: str, body: Any, root: Path) -> object:
    if section not in _CHECKS:
        importlib.import_module(TABLE_OWNERS[section])  # registers the check on import
    return _CHECKS[section](body, CONFIG_FILE, root)


def _nearest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.4)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(candidates)}"


def _said(source: str, setting: Setting, value: Any) -> str:
    return f"{source} {setting.key} = {redact_value(setting.key, value)!r}"


def _coerce(
    setting: Setting, value: Any, source: str, environ: Mapping[str, str] | None = None
) -> Any:
    """Convert ``value`` to the setting's type; strings from the environment are parsed."""
    expected = setting.type.__name__
    if setting.type is not str and is_reference(value):
        # A number or a flag is no secret: its reference is read now, and parsed as text.
        value = resolve(value, f"{setting.key} ({source.rstrip(':')})", environ)
        source = f"{source} (env)"
    try:
        # Only the environment holds text for everything; a file or an argument
        # already has types, and "8080" there is a mistake worth naming.
        from_text = source.endswith("(env)")
        if from_text and setting.type is int and isinstance(value, str):
            value = int(value.strip())
        elif from_text and setting.type is float and isinstance(value, str):
            value = float(value.strip())
        elif from_text and setting.type is bool and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            value = lowered in ("true", "1", "yes")
    except ValueError:
        raise ConfigError(
            f"{_said(source, setting, value)}: expected {expected}; fix the value"
        ) from None
    if setting.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # "max_delay_s = 5" in a file means 5.0
    if not isinstance(value, setting.type) or (setting.type is int and isinstance(value, bool)):
        raise ConfigError(
            f"{_said(source, setting, value)}: expected {expected}, "
            f"got {type(value).__name__}; fix the value"
        )
    if setting.choices and value not in setting.choices:
        raise ConfigError(
            f"{_said(source, setting, value)}: expected one of {', '.join(setting.choices)}"
        )
    if setting.bounds is not None:
        low, high = setting.bounds
        if not low <= cast("float", value) <= high:  # a number: its type was checked above
            raise ConfigError(
                f"{_said(source, setting, value)}: expected {low} to {high}; fix the value"
            )
    return value


@dataclass(frozen=True)
class Config(Mapping[str, Any]):
    """The effective settings of one workspace, with the source of each value."""

    root: Path
    effective: Mapping[str, Any]
    sources: Mapping[str, str]
    tables: Mapping[str, Any] = field(default_factory=dict)
    checked: Mapping[str, object] = field(default_factory=dict)
    environ: Mapping[str, str] | None = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        if key not in self.effective:
            raise ConfigError(f"unknown setting '{key}'{_nearest(key, list(_BY_KEY))}")
        return self.effective[key]

    # Mapping's own ``in`` and ``get`` expect a KeyError, not our ConfigError.
    def __contains__(self, key: object) -> bool:
        return key in self.effective

    def get(self, key: str, default: Any = None) -> Any:
        return self.effective.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.effective)

    def __len__(self) -> int:
        return len(self.effective)

    def source(self, key: str) -> str:
        return self.sources[key]

    def value(self, key: str) -> Any:
        """The value to use: an ``env:NAME`` or ``file:/path`` reference read now.

        ``config[key]`` (and ``config show``) keep the reference itself; call this only
        where the value is used, so a secret never travels further than its use.
        """
        return resolve(self[key], f"{key} ({self.sources[key]})", self.environ)

    def table(self, section: str) -> object:
        """``[section]`` as its owner parsed it; an absent section reads as an empty table."""
        if section in self.checked:
            return self.checked[section]
        return _check_table(section, {}, self.root)

    def describe(self, key: str) -> str:
        """``"metadata.url (env MODELYARD_METADATA_URL) = 'x'"``, for error messages."""
        return f"{key} ({self.sources[key]}) = {self.shown(key)!r}"

    def shown(self, key: str) -> Any:
        """The value fit to print: passwords in URLs and secret settings hidden."""
        return redact_value(key, self[key])

    def __repr__(self) -> str:
        shown = {key: self.shown(key) for key in self.effective}
        return f"Config(root={str(self.root)!r}, effective={shown!r})"


def _read_file(
    path: Path, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings by key, tables by section) of ``path``."""
    if not path.exists():
        return {}, {}
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a file; move it away and run 'modelyard init'")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: cannot parse TOML ({exc}); fix the syntax") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 (TOML requires it)"
        ) from None
    except OSError as exc:  # unreadable: permissions, a dangling link, an I/O error
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}; fix the file") from None
    flat: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    for section, body in data.items():
        if section in _CHECKS or section in TABLE_OWNERS:
            tables[section] = body
            continue
        if not isinstance(body, dict):
            raise ConfigError(
                f"{path}: top-level key '{section}' must be a [section]"
                f"{_nearest(section, list(_BY_KEY))}"
            )
        sections = {k.split(".")[0] for k in _BY_KEY}
        if section not in sections:
            known = list(dict.fromkeys([*sections, *TABLE_OWNERS, *_CHECKS]))
            raise ConfigError(f"{path}: unknown section [{section}]{_nearest(section, known)}")
        for name, value in body.items():
            key = f"{section}.{name}"
            if key not in _BY_KEY:
                raise ConfigError(f"{path}: unknown key '{key}'{_nearest(key, list(_BY_KEY))}")
            flat[key] = _coerce(_BY_KEY[key], value, f"{path.name}:", environ)
    return flat, tables


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _NON_SETTING_ENV:
            continue
        setting = _BY_ENV.get(name)
        if setting is None:
            raise ConfigError(f"unknown environment variable {name}{_nearest(name, list(_BY_ENV))}")
        found[setting.key] = _coerce(setting, raw, f"{name} (env)", environ)
    return found


def load_config(
    root: str | os.PathLike[str] = ".",
    *,
    environ: Mapping[str, str] | None = None,
    **given: Any,
) -> Config:
    """Merge defaults, ``root/modelyard.toml``, ``MODELYARD_*`` and ``given`` (by key).

    ``given`` keys use underscores for dots: ``metadata_url="postgresql://…"``.
    """
    root_path = Path(root).resolve()
    env = os.environ if environ is None else environ
    path = root_path / CONFIG_FILE
    defaults = {s.key: s.default for s in SETTINGS}
    from_file, tables = _read_file(path, env)
    from_env = _read_env(env)
    from_args: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        key = name.replace("_", ".", 1)
        if key not in _BY_KEY:
            raise ConfigError(f"unknown setting '{name}'{_nearest(key, list(_BY_KEY))}")
        from_args[key] = _coerce(_BY_KEY[key], value, "argument", env)
    values = {**defaults, **from_file, **from_env, **from_args}
    sources: dict[str, str] = {}
    for key in values:
        if key in from_args:
            sources[key] = "argument"
        elif key in from_env:
            sources[key] = f"env {_BY_KEY[key].env}"
        elif key in from_file:
            sources[key] = f"file {path}"
        else:
            sources[key] = "default"
    # Tables are checked with the rest of the file: a bad alert rule or job fails the next
    # command, not the check that would have fired it.
    checked = {section: _check_table(section, body, root_path) for section, body in tables.items()}
    return Config(root_path, values, sources, tables=tables, checked=checked, environ=environ)


def render_template() -> str:
    """The commented ``modelyard.toml`` that ``modelyard init`` writes."""
    lines = [
        "# modelyard workspace configuration.",
        "# Precedence: command-line argument > MODELYARD_* environment > this file > default.",
        "# Every key below shows its default; uncomment a line to change it.",
        "# `modelyard config show` prints the effective value and source of each key.",
        '# Any value may be a reference, read only where it is used: "env:NAME" (an',
        '# environment variable) or "file:/path" (a mounted secret); a metadata url of',
        '# "env:META_DB_URL" keeps a database password out of this file.',
    ]
    section = ""
    for s in SETTINGS:
        head, name = s.key.split(".", 1)
        if head != section:
            section = head
            lines += ["", f"[{section}]"]
        default = f'"{s.default}"' if isinstance(s.default, str) else str(s.default).lower()
        lines += [f"# {s.doc} (env {s.env})", f"# {name} = {default}"]
    lines += [
        "",
        "# Alert rules and their sinks go in [[alerts.rules]] and [alerts.sinks.NAME] tables,",
        "# checked by `modelyard monitor check`; the README's Alerts section has an example.",
    ]
    return "\n".join(lines) + "\n"
