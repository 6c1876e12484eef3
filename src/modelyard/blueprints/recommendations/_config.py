"""The recommendations blueprint's settings: the ``[blueprint]`` table of ``modelyard.toml``.

    name              "recommendations"
    anchor            the day (UTC, YYYY-MM-DD) after the moved log's newest rating, and the
                      last night the quickstart replays; written on the first run (today)
    seed              seed of the factorisation
    model_name        the registered model's name (and the lists' name on the read API)
    holdout_days      the newest days of the log that judge the first model
    nights            the nights the quickstart replays, ending with ``anchor``'s
    k                 items kept per user in the published lists (the API's largest k)
    factors, iterations, regularization, alpha
                      implicit's ALS (alpha scales the confidence of an interaction)
    fail_night        the night (1 = the first replayed) whose first attempt fails, to show
                      a retry; 0: none
    [blueprint.bias]  the checks on every night's lists, and what a breach does

pydantic checks the table; every mistake is one ``ConfigError`` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelyard.blueprints._settings import parse_table, utc_day

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


def _finite(value: Any) -> Any:
    """TOML's true is no number (pydantic would read it as 1.0), nor are nan and inf."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number; give one such as 1.5")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number; give one such as 1.5")
    return value


class BiasSettings(BaseModel):
    """Thresholds of the bias checks; a night that breaches one is blocked (or warned)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_breach: Literal["block", "warn"] = "block"
    # The most popular 10% of items: their share of the recommended slots may be at most
    # this many times their share of the interactions.
    max_popularity_lift: float = Field(1.6, gt=0)
    # Distinct items recommended to anyone, as a share of the catalogue (items rated).
    min_coverage: float = Field(0.02, ge=0, le=1)
    # Per genre holding at least min_group_share of the catalogue: its share of the
    # recommended slots over its share of the catalogue stays within these bounds.
    min_exposure_ratio: float = Field(0.05, ge=0)
    max_exposure_ratio: float = Field(20.0, gt=0)
    min_group_share: float = Field(0.02, ge=0, le=1)

    @field_validator(
        "max_popularity_lift",
        "min_coverage",
        "min_exposure_ratio",
        "max_exposure_ratio",
        "min_group_share",
        mode="before",
    )
    @classmethod
    def _number(cls, value: Any) -> Any:
        return _finite(value)

    @model_validator(mode="after")
    def _ordered(self) -> BiasSettings:
        if self.min_exposure_ratio >= self.max_exposure_ratio:
            raise ValueError(
                f"min_exposure_ratio {self.min_exposure_ratio} must be below "
                f"max_exposure_ratio {self.max_exposure_ratio}"
            )
        return self


class RecommendationsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["recommendations"] = "recommendations"
    anchor: datetime | None = None
    # strict: TOML's true is no count (pydantic would read it as 1)
    seed: int = Field(42, ge=0, lt=2**32, strict=True)
    model_name: str = Field("recommender", pattern=_NAME)
    holdout_days: int = Field(365, ge=7, le=3650, strict=True)
    nights: int = Field(7, ge=1, le=60, strict=True)
    k: int = Field(20, ge=1, le=500, strict=True)
    factors: int = Field(64, ge=2, le=1024, strict=True)
    iterations: int = Field(15, ge=1, le=200, strict=True)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(1.0, gt=0)
    fail_night: int = Field(3, ge=0, strict=True)
    bias: BiasSettings = Field(default_factory=BiasSettings)

    @field_validator("regularization", "alpha", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return _finite(value)

    @field_validator("anchor", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        return None if value is None else utc_day(value).astimezone(UTC)

    @model_validator(mode="after")
    def _fail_night_inside(self) -> RecommendationsSettings:
        if self.fail_night > self.nights:
            raise ValueError(
                f"fail_night {self.fail_night} is after the {self.nights} nights replayed; "
                f"give 1 to {self.nights}, or 0 for none"
            )
        return self

    def fixed(self) -> dict[str, Any]:
        """What the first model was judged with: a change after the first run is refused
        (the bias thresholds and ``fail_night`` may change: they act on later nights)."""
        return self.model_dump(mode="json", exclude={"name", "bias", "fail_night", "nights", "k"})


def parse_settings(
    section: Mapping[str, Any], source: str = "modelyard.toml"
) -> RecommendationsSettings:
    """The settings of a ``[blueprint]`` table; a mistake is one line naming its key."""
    return parse_table(RecommendationsSettings, section, source)


def check_table(section: Mapping[str, Any], source: str) -> None:
    """Validate the ``[blueprint]`` table of a recommendations workspace (nothing is read)."""
    parse_settings(section, source)


def settings_of(ws: Workspace) -> RecommendationsSettings:
    """The workspace's recommendations settings (its ``[blueprint]`` table)."""
    return parse_settings(ws.config.tables.get("blueprint", {}))
