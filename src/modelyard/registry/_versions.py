"""What the registry returns: registered models and their versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelyard.registry._signature import Signature


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    flavor: str
    artifact: str
    signature: Signature
    run_id: str | None
    metrics: dict[str, float | None]
    tags: dict[str, str]
    lineage: dict[str, Any]
    description: str
    created_at: datetime
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    latest_version: int
    created_at: datetime
    updated_at: datetime
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedModel:
    """A model saved under a run, ready to be registered."""

    run_id: str
    path: str
    artifact: str
    flavor: str
    signature: Signature

    @property
    def uri(self) -> str:
        return f"runs:/{self.run_id}/{self.path}"
