"""Feature definitions: Entity, FeatureView, FeatureService, and feature references.

Definitions are plain frozen dataclasses: building one does no I/O and checks only
its own shape; ``ws.features.apply`` validates them against the data and stores them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from modelyard.contracts import DTYPES, Field, Schema
from modelyard.errors import InvalidInputError
from modelyard.features._checks import Check, check_from_spec, check_spec, validate_checks
from modelyard.features._sources import Source, source_from_spec


def _fields(value: Schema | Mapping[str, str] | Iterable[Field], what: str) -> tuple[Field, ...]:
    if isinstance(value, Schema):
        return value.fields
    if isinstance(value, Mapping):
        out = []
        for name, dtype in value.items():
            if dtype not in DTYPES:
                raise InvalidInputError(
                    f"{what} '{name}': dtype {dtype!r} is not one of {', '.join(DTYPES)}"
                )
            out.append(Field(name=name, dtype=dtype))
        return tuple(out)
    return tuple(value)


@dataclass(frozen=True)
class Entity:
    """What features describe (a driver, a customer), identified by its join keys."""

    name: str
    join_keys: tuple[Field, ...]
    description: str = ""

    def __init__(
        self,
        name: str,
        join_keys: Schema | Mapping[str, str] | Iterable[Field],
        description: str = "",
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "join_keys", _fields(join_keys, "join key"))
        object.__setattr__(self, "description", description)
        if not self.join_keys:
            raise InvalidInputError(f"entity '{name}' needs at least one join key")

    @property
    def key_names(self) -> list[str]:
        return [f.name for f in self.join_keys]

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "join_keys": [f.model_dump(mode="json", exclude_defaults=True) for f in self.join_keys],
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Entity:
        keys = [Field.model_validate(f) for f in spec["join_keys"]]
        return cls(spec["name"], keys, spec.get("description", ""))


@dataclass(frozen=True)
class FeatureView:
    """Features of one entity from one source, valid for ``ttl`` after their event time."""

    name: str
    entity: Entity
    source: Source
    features: tuple[Field, ...]
    ttl: timedelta | None = None
    online: bool = True
    owner: str = ""
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    def __init__(
        self,
        name: str,
        *,
        entity: Entity,
        source: Source,
        features: Schema | Mapping[str, str] | Iterable[Field],
        ttl: timedelta | None = None,
        online: bool = True,
        owner: str = "",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        checks: Sequence[Check] = (),
    ) -> None:
        for attr, value in (
            ("name", name),
            ("entity", entity),
            ("source", source),
            ("features", _fields(features, "feature")),
            ("ttl", ttl),
            ("online", online),
            ("owner", owner),
            ("description", description),
            ("tags", dict(tags or {})),
            ("checks", tuple(checks)),
        ):
            object.__setattr__(self, attr, value)
        if not self.features:
            raise InvalidInputError(f"feature view '{name}' declares no features")
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidInputError(f"feature view '{name}': ttl must be positive, got {ttl}")
        clash = set(self.feature_names) & set(entity.key_names)
        if clash:
            raise InvalidInputError(
                f"feature view '{name}': {sorted(clash)} are join keys, not features"
            )
        validate_checks(self)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def schema(self) -> Schema:
        return Schema(fields=self.features)

    def feature(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        close = difflib.get_close_matches(name, self.feature_names, n=1)
        hint = (
            f"did you mean '{self.name}:{close[0]}'?"
            if close
            else (f"its features: {', '.join(self.feature_names)}")
        )
        raise InvalidInputError(f"feature view '{self.name}' has no feature '{name}'; {hint}")

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entity": self.entity.spec(),
            "source": self.source.spec(),
            "features": [f.model_dump(mode="json", exclude_defaults=True) for f in self.features],
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
            "online": self.online,
            "owner": self.owner,
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
            "checks": [check_spec(c) for c in self.checks],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        return cls(
            spec["name"],
            entity=Entity.from_spec(spec["entity"]),
            source=source_from_spec(spec["source"]),
            features=[Field.model_validate(f) for f in spec["features"]],
            ttl=None if ttl is None else timedelta(seconds=ttl),
            online=spec.get("online", True),
            owner=spec.get("owner", ""),
            description=spec.get("description", ""),
            tags=spec.get("tags", {}),
            checks=[check_from_spec(c) for c in spec.get("checks", [])],
        )


@dataclass(frozen=True)
class FeatureRef:
    """``view:feature``; ``view:*`` means every feature of the view."""

    view: str
    feature: str

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        view, sep, feature = text.partition(":")
        if not sep or not view or not feature:
            raise InvalidInputError(
                f"feature reference {text!r} must be 'view:feature' (or 'view:*')"
            )
        return cls(view, feature)

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


@dataclass(frozen=True)
class FeatureService:
    """A named selection of features from several views, e.g. what model ``churn_v1`` uses."""

    name: str
    features: tuple[str, ...]
    description: str = ""

    def __init__(
        self,
        name: str,
        features: Sequence[str | FeatureView],
        description: str = "",
    ) -> None:
        refs: list[str] = []
        for item in features:
            if isinstance(item, FeatureView):
                refs.extend(f"{item.name}:{f}" for f in item.feature_names)
            else:
                refs.append(str(FeatureRef.parse(item)))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "features", tuple(refs))
        object.__setattr__(self, "description", description)
        if not refs:
            raise InvalidInputError(f"feature service '{name}' selects no features")

    @property
    def refs(self) -> list[FeatureRef]:
        return [FeatureRef.parse(r) for r in self.features]

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.features), "description": self.description}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureService:
        return cls(spec["name"], spec["features"], spec.get("description", ""))
