"""Model references: ``name@alias``, ``name/version`` or ``name`` (its latest version)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidInputError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}")
ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,99}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"model name {name!r} is not valid; use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias) or alias == "latest":
        raise InvalidInputError(
            f"alias {alias!r} is not valid; use a letter then letters, digits, '_' or '-' "
            "('latest' is reserved)"
        )
    return alias


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if not isinstance(text, str) or not text:
            raise InvalidInputError("model reference is empty; write NAME@ALIAS or NAME/VERSION")
        if "@" in text:
            name, alias = text.split("@", 1)
            if alias == "latest":
                return cls(check_name(name))
            return cls(check_name(name), alias=check_alias(alias))
        if "/" in text:
            name, version = text.split("/", 1)
            if not version.isdigit() or int(version) < 1:
                raise InvalidInputError(
                    f"model reference {text!r}: version {version!r} must be a positive integer"
                )
            return cls(check_name(name), version=int(version))
        return cls(check_name(text))

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@latest"
