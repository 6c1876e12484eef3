"""The churn blueprint's settings: the ``[blueprint]`` table of ``modelyard.toml``, with
``[blueprint.customers]`` (the customer table's mapping, ``_customers.py``) and
``[blueprint.costs]`` (what the decision threshold is tuned to, ``_threshold.py``).

    name              "churn"
    start             the first simulated day, UTC (YYYY-MM-DD)
    seed              seed of the simulator and of training
    model_name        the registered model's name
    scores_url        where daily scores go ("": a SQLite file in the workspace; or
                      postgresql://…)
    valid_days        the newest days of cut-offs each training validates on
    train_days        the days of cut-offs before those that it learns from
    drift_day         a day from which the simulator injects a drift (absent: none), 0 to
                      ``LAST_LEAVING_DAY``: a replay stops there, so a later drift is never seen
    [customers]       the customer table's mapping (``_customers.py``)
    [events]          a team's own event table and its mapping (``_events.py``)
    [costs]           missed_churner (> 0), retention_offer (>= 0), in one currency

pydantic checks the table; every mistake is one ``ConfigError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelyard.blueprints._settings import parse_table, utc_day
from modelyard.blueprints.churn._customers import CustomerColumns
from modelyard.blueprints.churn._events import EventsTable
from modelyard.blueprints.churn._simulate import LAST_LEAVING_DAY

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

NAME = "churn"


class Costs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    missed_churner: float = Field(500.0, gt=0)
    retention_offer: float = Field(50.0, ge=0)


class ChurnSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["churn"] = "churn"
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    seed: int = Field(42, ge=0, lt=2**32)
    model_name: str = Field(NAME, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    scores_url: str = ""
    valid_days: int = Field(7, ge=1, le=365)
    drift_day: int | None = None
    train_days: int = Field(28, ge=1, le=365)
    customers: CustomerColumns = Field(default_factory=CustomerColumns)
    events: EventsTable = Field(default_factory=EventsTable)
    costs: Costs = Field(default_factory=Costs)

    @field_validator("start", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        return utc_day(value)

    @field_validator("drift_day")
    @classmethod
    def _seen(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= LAST_LEAVING_DAY:
            raise ValueError(
                f"{value} is out of range: expected a day from 0 to {LAST_LEAVING_DAY} (a "
                f"replay stops at day {LAST_LEAVING_DAY}, the simulator's last leaving day, so "
                "a later drift is never seen)"
            )
        return value

    def scores_at(self, root: Path) -> str:
        """The scores table's URL: ``scores_url``, else a SQLite file in the workspace."""
        return self.scores_url or f"sqlite:///{root / '.modelyard' / 'churn_scores.db'}"


def parse_settings(section: Mapping[str, Any], source: str = "modelyard.toml") -> ChurnSettings:
    """The settings of a ``[blueprint]`` table; a mistake is one line naming its key."""
    return parse_table(ChurnSettings, section, source)


def check_table(section: Mapping[str, Any], source: str) -> None:
    """Validate the ``[blueprint]`` table of a churn workspace (nothing is read)."""
    parse_settings(section, source)


def settings_of(ws: Workspace) -> ChurnSettings:
    """The workspace's churn settings (its ``[blueprint]`` table)."""
    return parse_settings(ws.config.tables.get("blueprint", {}))
