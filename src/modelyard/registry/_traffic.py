"""A model's live traffic split: ``percent`` of its requests go to ``NAME@candidate``.

The split lives in the metadata store (``model_traffic``), not in a server's memory,
so every replica of every server follows the same row, and a rollout driven from one
machine (``modelyard release canary``) moves traffic on all of them. Servers read the
row when they poll their aliases, never per request. No row means the server's own
policy (its serve spec) decides; a row with ``percent = 0`` sends everything to the
champion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.errors import ConflictError, InvalidInputError
from modelyard.registry._refs import ModelRef, check_alias, check_name

if TYPE_CHECKING:
    from modelyard.registry._registry import Registry


@dataclass(frozen=True)
class TrafficSplit:
    """``percent`` (0–100) of ``name``'s requests go to ``name@candidate``, everywhere."""

    name: str
    candidate: str
    percent: float
    updated_at: datetime

    def describe(self) -> str:
        return f"{self.percent:g}% of '{self.name}' to @{self.candidate}"


def set_traffic(
    registry: Registry, name: str, candidate: str, percent: float, *, exclusive: bool = False
) -> TrafficSplit:
    """Send ``percent`` of ``name``'s requests to ``name@candidate`` on every server.

    ``exclusive=True`` refuses (``ConflictError``) when a split is already set, in the
    same transaction that writes it: two rollouts of one model cannot both start.
    """
    check_name(name)
    check_alias(candidate)
    if not isinstance(percent, int | float) or not math.isfinite(percent):
        raise InvalidInputError(f"traffic percent {percent!r} is not a number; give 0 to 100")
    if not 0 <= percent <= 100:
        raise InvalidInputError(f"traffic percent {percent:g} is outside 0..100; give 0 to 100")
    registry.get(ModelRef(name, alias=candidate))  # the model and alias exist (one-line error)
    now = _time.now_us()
    row = {"name": name, "candidate": candidate, "percent": float(percent), "updated_at": now}
    store = registry.metadata
    try:
        with store.write() as conn:
            if exclusive:
                conn.execute(insert(t.model_traffic), [row])
            else:
                store.upsert(
                    conn,
                    t.model_traffic,
                    [row],
                    keys=("name",),
                    update=("candidate", "percent", "updated_at"),
                )
    except IntegrityError:
        current = get_traffic(registry, name)
        shown = current.describe() if current is not None else f"a split of '{name}'"
        raise ConflictError(
            f"{shown} is already set (a canary may be running); wait for it to finish, "
            f"or stop it with 'modelyard release canary {name} --stop'"
        ) from None
    return TrafficSplit(name, candidate, float(percent), _when(now))


def get_traffic(registry: Registry, name: str) -> TrafficSplit | None:
    """The live split of ``name``, or None when its servers follow their own policy."""
    table = t.model_traffic
    with registry.metadata.read() as conn:
        row = conn.execute(select(table).where(table.c.name == name)).first()
    if row is None:
        return None
    return TrafficSplit(row.name, row.candidate, float(row.percent), _when(row.updated_at))


def clear_traffic(registry: Registry, name: str) -> TrafficSplit | None:
    """Remove ``name``'s split (servers go back to their own policy); returns what it was."""
    table = t.model_traffic
    with registry.metadata.write() as conn:
        row = conn.execute(select(table).where(table.c.name == name)).first()
        if row is None:
            return None
        conn.execute(delete(table).where(table.c.name == name))
    return TrafficSplit(row.name, row.candidate, float(row.percent), _when(row.updated_at))


def _when(us: int) -> datetime:
    when = _time.to_datetime(us)
    assert when is not None
    return when
