"""Secret references: a setting written ``env:NAME`` or ``file:/path`` names where its value
is kept, and the value is read only where it is used.

``metadata.url = "env:META_DB_URL"`` in ``modelyard.toml`` (or in ``MODELYARD_METADATA_URL``)
keeps the password out of the file, the shell history and ``config show``, which print the
reference. ``file:`` reads a file (a mounted Kubernetes or Docker secret) and drops one
trailing newline. Every value resolved here is remembered by ``_redact``, so it is hidden
from every message, repr and log line that passes through ``redact`` even where it does
not look like a password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard._redact import remember_secret
from modelyard.errors import ConfigError

__all__ = ["is_reference", "resolve"]

_PREFIXES = ("env:", "file:")


def is_reference(value: Any) -> bool:
    """``value`` is an ``env:NAME`` or ``file:/path`` reference (not a URL or a path)."""
    return isinstance(value, str) and value.startswith(_PREFIXES)


def resolve(value: Any, what: str, environ: Mapping[str, str] | None = None) -> Any:
    """The value ``value`` refers to (``value`` itself when it is no reference).

    ``what`` names the setting for errors: ``"metadata.url (file modelyard.toml)"``.
    """
    if not is_reference(value):
        return value
    kind, _, target = value.partition(":")
    if kind == "env":
        env = os.environ if environ is None else environ
        found = env.get(target)
        if not target:
            raise ConfigError(f"{what} = {value!r}: name the variable after env:, e.g. env:DB_URL")
        if found is None:
            raise ConfigError(
                f"{what} = {value!r}: the environment variable {target} is not set; "
                f"export it, or change {what.split(' ')[0]}"
            )
    else:
        path = Path(target).expanduser()
        try:
            found = path.read_text(encoding="utf-8").removesuffix("\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(
                f"{what} = {value!r}: cannot read {path} ({reason}); mount the secret "
                "there, or change the reference"
            ) from None
    if not found:
        raise ConfigError(f"{what} = {value!r}: the secret is empty; put the value there")
    remember_secret(found)
    return found
