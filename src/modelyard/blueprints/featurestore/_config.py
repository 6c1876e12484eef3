"""The featurestore blueprint's settings: the ``[blueprint]`` table of ``modelyard.toml``.

    name              "featurestore"
    anchor            the day (UTC, YYYY-MM-DD) the replayed rating log is moved to end
                      by; the quickstart writes today on its first run
    seed              seed of training
    stream_days       the newest days of the log, replayed as the event stream (push)
    backfill_days     the days before the stream that the backfill demonstration covers
    bad_day           the day of that window (1 = its first) whose batch file the
                      demonstration breaks (5); 0: none
    holdout_days      the days before the stream whose rows judge the models
    rating_model      the registered names of the two models
    engagement_model

pydantic checks the table; every mistake is one ``ConfigError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelyard.blueprints._settings import parse_table, utc_day

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class FeaturestoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["featurestore"] = "featurestore"
    anchor: datetime | None = None
    # strict: TOML's true is no count of days (pydantic would read it as 1)
    seed: int = Field(42, ge=0, lt=2**32, strict=True)
    stream_days: int = Field(30, ge=1, le=365, strict=True)
    backfill_days: int = Field(14, ge=1, le=120, strict=True)
    bad_day: int = Field(5, ge=0, strict=True)
    holdout_days: int = Field(365, ge=30, le=3650, strict=True)
    rating_model: str = Field("rating", pattern=_NAME)
    engagement_model: str = Field("engagement", pattern=_NAME)

    @field_validator("anchor", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        return None if value is None else utc_day(value).astimezone(UTC)

    def fixed(self) -> dict[str, Any]:
        """What a workspace is set up with: a change after the first run is refused."""
        return self.model_dump(mode="json", exclude={"name"})

    @model_validator(mode="after")
    def _bad_day_inside(self) -> FeaturestoreSettings:
        if self.bad_day > self.backfill_days:
            raise ValueError(
                f"bad_day {self.bad_day} is outside the backfill window of "
                f"{self.backfill_days} days; give 1 to {self.backfill_days}, or 0 for none"
            )
        if self.rating_model == self.engagement_model:
            raise ValueError("rating_model and engagement_model must be two names")
        return self


def parse_settings(
    section: Mapping[str, Any], source: str = "modelyard.toml"
) -> FeaturestoreSettings:
    """The settings of a ``[blueprint]`` table; a mistake is one line naming its key."""
    return parse_table(FeaturestoreSettings, section, source)


def check_table(section: Mapping[str, Any], source: str) -> None:
    """Validate the ``[blueprint]`` table of a featurestore workspace (nothing is read)."""
    parse_settings(section, source)


def settings_of(ws: Workspace) -> FeaturestoreSettings:
    """The workspace's featurestore settings (its ``[blueprint]`` table)."""
    return parse_settings(ws.config.tables.get("blueprint", {}))
