"""``ws.features``: the feature store's entry point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.features._definitions import Entity, FeatureService, FeatureView
from modelyard.features._historical import Output, get_historical
from modelyard.features._registry import Change, Definition, Definitions

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore


class FeatureStore:
    """Definitions (plan, apply, look up) and point-in-time correct training sets."""

    def __init__(self, metadata: MetadataStore, offline_root: Path) -> None:
        self.offline_root = offline_root
        self.definitions = Definitions(metadata, offline_root)

    def plan(self, objects: Sequence[Definition]) -> list[Change]:
        return self.definitions.plan(objects)

    def apply(self, objects: Sequence[Definition]) -> list[Change]:
        return self.definitions.apply(objects)

    def entity(self, name: str, version: int | None = None) -> Entity:
        return self.definitions.entity(name, version)

    def view(self, name: str, version: int | None = None) -> FeatureView:
        return self.definitions.view(name, version)

    def service(self, name: str, version: int | None = None) -> FeatureService:
        return self.definitions.service(name, version)

    def list(self) -> list[tuple[str, str, int]]:
        return self.definitions.list()

    def get_historical(
        self,
        entity_rows: Any,
        features: FeatureService | str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
        output: Output = "pandas",
        path: str | Path | None = None,
    ) -> Any:
        """Per entity row, each feature's latest value at or before the row's time (in ttl).

        ``features``: a FeatureService, a service name, or ``["view:feature", ...]``.
        Returns pandas (default), Arrow or polars; with ``path`` writes Parquet there.
        """
        return get_historical(
            self.definitions,
            entity_rows,
            features,
            timestamp_field=timestamp_field,
            assume_utc=assume_utc,
            full_feature_names=full_feature_names,
            output=output,
            path=path,
            temp_directory=self.offline_root / ".tmp",
        )
