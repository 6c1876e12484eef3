"""What the registry returns: registered models and their versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelyard.registry._signature import Signature


@dataclass(frozen=True)
class FeatureBinding:
    """The feature service a served model reads from the online store, by the request's keys.

    ``on_missing``: ``"reject"`` answers 422 naming the feature and key; ``"default"``
    fills the value from ``defaults`` (every feature of the service needs one).
    """

    service: str
    on_missing: Literal["reject", "default"] = "reject"
    defaults: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {"service": self.service, "on_missing": self.on_missing, "defaults": self.defaults}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> FeatureBinding | None:
        if not data:
            return None
        return cls(
            data["service"], data.get("on_missing", "reject"), dict(data.get("defaults", {}))
        )


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
    features: FeatureBinding | None = None
    seal: str | None = None  # security/_seal.py; None: registered before seals

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
    size: int = 0  # bytes stored (the model's folder as a tree)

    @property
    def uri(self) -> str:
        return f"runs:/{self.run_id}/{self.path}"
