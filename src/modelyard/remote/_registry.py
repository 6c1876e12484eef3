"""The registry through the team server.

``RemoteRegistry`` is the ordinary ``Registry`` with every method that reads or writes
the metadata database sent to the server instead; what works on files (``log_model``
saving a model, ``load`` fetching and loading it) runs here, against the server's
artifact store over HTTP. Seals are made and checked by the server, which holds the
workspace's signing key: a client never sees it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from modelyard.errors import ConfigError
from modelyard.registry import (
    FeatureBinding,
    LoggedModel,
    ModelRef,
    ModelVersion,
    RegisteredModel,
    Registry,
    TrafficSplit,
)
from modelyard.remote._client import TeamClient

if TYPE_CHECKING:
    from collections.abc import Mapping

    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.backends.metadata import MetadataStore


class RemoteRegistry(Registry):
    def __init__(self, client: TeamClient, artifacts: ArtifactStore, cache: Path) -> None:
        super().__init__(None, artifacts, cache, signing_key=None)  # type: ignore[arg-type]
        self.client = client

    def _call(self, method: str, *args: Any, idempotent: bool = False, **kwargs: Any) -> Any:
        return self.client.call("registry", method, *args, idempotent=idempotent, **kwargs)

    def refusing_pickles(self) -> Registry:
        strict = RemoteRegistry(self.client, self._artifacts, self._cache)
        strict._safe_only = True
        return strict

    @property
    def metadata(self) -> MetadataStore:
        raise ConfigError(
            f"this workspace reaches its registry through the team server at "
            f"{self.client.url}; reading the metadata database itself needs metadata.url "
            "to name the database"
        )

    @property
    def direct(self) -> bool:
        return False

    def traffic(self, name: str) -> TrafficSplit | None:
        found: TrafficSplit | None = self._call("traffic", name, idempotent=True)
        return found

    def seal_of(self, name: str, version: int, artifact: str) -> str | None:
        return None  # the server seals what it registers

    def seal_version(self, ref: str | ModelRef) -> ModelVersion:
        found: ModelVersion = self._call("seal_version", ref)
        return found

    def check_seal(self, version: ModelVersion) -> None:
        self._call("check_seal", version, idempotent=True)

    def register(
        self,
        name: str,
        source: LoggedModel | str,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        features: FeatureBinding | None = None,
    ) -> ModelVersion:
        found: ModelVersion = self._call(
            "register",
            name,
            source,
            description=description,
            tags=dict(tags or {}),
            features=features,
        )
        return found

    def register_artifact(self, name: str, artifact: str, **kwargs: Any) -> ModelVersion:
        found: ModelVersion = self._call("register_artifact", name, artifact, **kwargs)
        return found

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        found: ModelVersion = self._call("set_alias", name, alias, int(version), idempotent=True)
        return found

    def rollback(self, name: str, alias: str = "production", *, also: Any = None) -> ModelVersion:
        _no_also(also)
        found: ModelVersion = self._call("rollback", name, alias)
        return found

    def rollback_target(self, name: str, alias: str = "production") -> int | None:
        found: int | None = self._call("rollback_target", name, alias, idempotent=True)
        return found

    def move_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expect: int | None,
        clear_split: Any = None,
        also: Any = None,
    ) -> ModelVersion:
        _no_also(also)
        found: ModelVersion = self._call(
            "move_alias", name, alias, int(version), expect=expect, clear_split=clear_split
        )
        return found

    def alias_history(self, name: str, alias: str) -> list[tuple[datetime, str, int | None]]:
        found: list[tuple[datetime, str, int | None]] = self._call(
            "alias_history", name, alias, idempotent=True
        )
        return found

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("delete_alias", name, alias)

    def get(self, ref: str | ModelRef) -> ModelVersion:
        found: ModelVersion = self._call("get", ref, idempotent=True)
        return found

    def versions(self, name: str) -> list[ModelVersion]:
        found: list[ModelVersion] = self._call("versions", name, idempotent=True)
        return found

    def list(self) -> list[RegisteredModel]:
        found: list[RegisteredModel] = self._call("list", idempotent=True)
        return found

    def _missing_model(self, name: str, conn: Any) -> NoReturn:
        self.get(name)  # raises the server's NotFoundError
        raise AssertionError("unreachable")


def _no_also(also: Any) -> None:
    if also is not None:
        raise ConfigError(
            "this step writes other records in the alias move's transaction, which the team "
            "server does not take from a client; run it where metadata.url is the database"
        )
