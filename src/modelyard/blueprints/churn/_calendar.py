"""The churn pipeline's calendar: its days, where their files lie, and how far it has
reached (the replay's clock, or the wall clock for a scheduler on the real calendar)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.blueprints.churn._config import ChurnSettings
from modelyard.blueprints.churn._daily import day_name
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Folders:
    """Where the pipeline keeps its day files, under the workspace's ``.modelyard/``."""

    events: Path
    features: Path
    scored: Path

    @classmethod
    def of(cls, root: Path) -> Folders:
        base = root / ".modelyard" / "churn"
        return cls(base / "events", base / "features", base / "scored")


def day_ended_by(settings: ChurnSettings, when: datetime) -> int:
    """The newest day (0 is ``start``) that has ended at ``when``."""
    return int((when.astimezone(UTC) - settings.start) // DAY) - 1


def day_end(settings: ChurnSettings, day: int) -> datetime:
    return settings.start + (day + 1) * DAY


CLOCK_FILE = "clock.json"


def clock_of(ws: Workspace) -> datetime | None:
    """How far the calendar has been replayed (None: never)."""
    path = Folders.of(Path(ws.config.root)).events.parent / CLOCK_FILE
    if not path.exists():
        return None
    return datetime.fromisoformat(json.loads(path.read_text())["now"])


def require_calendar(
    ws: Workspace, settings: ChurnSettings, day: int, first: int, what: str
) -> None:
    """``day`` is one the calendar has reached: by its replays, or by the wall clock (a
    scheduler on the real calendar). A later day would be computed from events not laid
    out yet, and the scheduler, which goes on from the newest day run, would skip the
    days between."""
    if day < first:
        raise InvalidInputError(
            f"{day_name(settings.start, day)} is before the calendar's first day of {what}, "
            f"{day_name(settings.start, first)} (day {first}; day 0 is blueprint.start); "
            "give a later --date"
        )
    clock = clock_of(ws)
    if clock is None:  # the calendar has not begun: its history is being laid out
        return
    reached = max(day_ended_by(settings, clock), day_ended_by(settings, datetime.now(UTC)))
    if day > reached:
        raise InvalidInputError(
            f"{day_name(settings.start, day)} is after the newest day the calendar has "
            f"reached, {day_name(settings.start, reached)}; replay up to it first "
            "(modelyard quickstart --blueprint churn --simulate-days N), or give an earlier "
            "--date"
        )
