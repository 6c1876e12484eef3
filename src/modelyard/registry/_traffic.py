"""A model's live traffic split: ``percent`` of its requests go to ``NAME@candidate``.

The split lives in the metadata store (``model_traffic``), not in a server's memory,
so every replica of every server follows the same row, and a rollout driven from one
machine (``modelyard release canary``) moves traffic on all of them. Servers read the
row when they poll their aliases, never per request. No row means the server's own
policy (its serve spec) decides; a row with ``percent = 0`` sends everything to the
champion.

A rollout owns its split through a lease: it writes the split with ``ttl_s`` and
renews it every few seconds. A split whose lease ran out (``expires_at`` passed)
belongs to a rollout that died (SIGKILL, a CI timeout): servers treat it as absent
and the next rollout may take it over (``claim_traffic``). A split written without
``ttl_s`` (by hand) never expires; it stays until ``clear_traffic``.

Every write after the first is a compare-and-set on the row the writer last saw
(``expect=``): a split cleared by ``--stop`` is never silently recreated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.errors import ConflictError, InvalidInputError
from modelyard.registry._refs import ModelRef, check_alias, check_name
from modelyard.security import record

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from modelyard.registry._registry import Registry

STALE_AFTER_S = 60.0
"""The lease of a rollout's split, in seconds. ``release canary`` renews its split far
more often than this (every ``RENEW_EVERY_S`` of ``modelyard.release``); a split not
renewed for this long is taken to be left behind by a rollout that died. Long enough
to ride out a metadata store that blinks for a few polls, and a few seconds of clock
difference between the rollout's machine and the servers'."""


@dataclass(frozen=True)
class TrafficSplit:
    """``percent`` (0–100) of ``name``'s requests go to ``name@candidate``, everywhere.

    ``expires_at``: when the split stops counting unless renewed (None: never).
    ``stamp``: the write this split was read from (its ``updated_at`` in microseconds,
    as stored), which ``expect=`` compares.
    """

    name: str
    candidate: str
    percent: float
    updated_at: datetime
    expires_at: datetime | None = None
    stamp: int = 0

    def expired(self, now: datetime | None = None) -> bool:
        """True when the lease ran out: servers ignore the split, a rollout may take it."""
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def describe(self) -> str:
        return f"{self.percent:g}% of '{self.name}' to @{self.candidate}"


def _check(name: str, candidate: str, percent: float, ttl_s: float | None) -> None:
    check_name(name)
    check_alias(candidate)
    if not isinstance(percent, int | float) or not math.isfinite(percent):
        raise InvalidInputError(f"traffic percent {percent!r} is not a number; give 0 to 100")
    if not 0 <= percent <= 100:
        raise InvalidInputError(f"traffic percent {percent:g} is outside 0..100; give 0 to 100")
    if ttl_s is not None and not (math.isfinite(ttl_s) and ttl_s > 0):
        raise InvalidInputError(f"ttl_s {ttl_s!r} must be a positive number of seconds, or None")


def _row(name: str, candidate: str, percent: float, ttl_s: float | None) -> dict[str, Any]:
    now = _time.now_us()
    expires = None if ttl_s is None else now + round(ttl_s * 1e6)
    return {
        "name": name,
        "candidate": candidate,
        "percent": float(percent),
        "updated_at": now,
        "expires_at": expires,
    }


def set_traffic(
    registry: Registry,
    name: str,
    candidate: str,
    percent: float,
    *,
    exclusive: bool = False,
    expect: TrafficSplit | None = None,
    ttl_s: float | None = None,
) -> TrafficSplit:
    """Send ``percent`` of ``name``'s requests to ``name@candidate`` on every server.

    ``exclusive=True`` refuses (``ConflictError``) when a live split is already set, in
    the same transaction that writes it: two rollouts of one model cannot both start
    (an expired split is taken over; ``claim_traffic`` also returns it).
    ``expect=split`` writes only if the row is still the one ``split`` was read from,
    else ``ConflictError``: a split cleared or changed meanwhile stays so.
    ``ttl_s``: the split expires that long after this write unless written again
    (renewed); None, the default for a split set by hand, never expires.
    """
    if exclusive:
        return claim_traffic(registry, name, candidate, percent, ttl_s=ttl_s)[0]
    _check(name, candidate, percent, ttl_s)
    registry.get(ModelRef(name, alias=candidate))  # the model and alias exist (one-line error)
    row = _row(name, candidate, percent, ttl_s)
    table = t.model_traffic
    store = registry.metadata
    with store.write() as conn:
        if expect is None:
            store.upsert(
                conn,
                table,
                [row],
                keys=("name",),
                update=("candidate", "percent", "updated_at", "expires_at"),
            )
            _audit_set(conn, name, candidate, percent, ttl_s)
        else:
            changed = conn.execute(
                update(table)
                .where(*_same(expect))
                .values({k: v for k, v in row.items() if k != "name"})
            ).rowcount
            if changed != 1:
                raise _gone(conn, expect)
            if (expect.candidate, expect.percent) != (candidate, percent):  # not a renewal
                _audit_set(conn, name, candidate, percent, ttl_s)
    return _split(row)


def _audit_set(conn: Connection, name: str, candidate: str, percent: float, ttl_s: Any) -> None:
    record(conn, "traffic.set", name, {"candidate": candidate, "percent": percent, "ttl_s": ttl_s})


def claim_traffic(
    registry: Registry, name: str, candidate: str, percent: float, *, ttl_s: float | None
) -> tuple[TrafficSplit, TrafficSplit | None]:
    """Start a rollout's split: (the split written, the expired split it took over).

    A live split (a rollout running, or one set by hand) is a ``ConflictError``.
    """
    _check(name, candidate, percent, ttl_s)
    registry.get(ModelRef(name, alias=candidate))
    row = _row(name, candidate, percent, ttl_s)
    table = t.model_traffic
    replaced: TrafficSplit | None = None
    try:
        with registry.metadata.write() as conn:
            replaced = _read(conn, name)
            if replaced is not None:
                if not replaced.expired(_time.to_datetime(row["updated_at"])):
                    raise _running(name, replaced)
                # Only the row judged expired: a rollout that took it over meanwhile wins.
                if conn.execute(delete(table).where(*_same(replaced))).rowcount != 1:
                    raise _running(name, _read(conn, name))
            conn.execute(insert(table), [row])
            _audit_set(conn, name, candidate, percent, ttl_s)
    except IntegrityError:  # another rollout inserted first
        raise _running(name, get_traffic(registry, name)) from None
    return _split(row), replaced


def get_traffic(registry: Registry, name: str) -> TrafficSplit | None:
    """The split of ``name`` as stored (an expired one included: see ``expired``)."""
    return registry.traffic(name)


def read_traffic(registry: Registry, name: str) -> TrafficSplit | None:
    with registry.metadata.read() as conn:
        return _read(conn, name)


def clear_traffic(
    registry: Registry, name: str, *, expect: TrafficSplit | None = None
) -> TrafficSplit | None:
    """Remove ``name``'s split (servers go back to their own policy); returns what it was.

    ``expect=split`` removes it only if it is still the row ``split`` was read from;
    None when nothing was removed.
    """
    with registry.metadata.write() as conn:
        if expect is not None:
            return expect if take_split(conn, expect) else None
        found = _read(conn, name)
        if found is not None:
            conn.execute(delete(t.model_traffic).where(t.model_traffic.c.name == name))
            _audit_clear(conn, found)
    return found


def take_split(conn: Connection, split: TrafficSplit) -> bool:
    """Delete ``split`` in the caller's transaction if it is unchanged; True if it was."""
    taken = conn.execute(delete(t.model_traffic).where(*_same(split))).rowcount == 1
    if taken:
        _audit_clear(conn, split)
    return bool(taken)


def _audit_clear(conn: Connection, split: TrafficSplit) -> None:
    record(conn, "traffic.clear", split.name, {"candidate": split.candidate, "was": split.percent})


def _same(split: TrafficSplit) -> tuple[Any, ...]:
    """The row ``split`` was read from: the same write, not merely the same numbers."""
    c = t.model_traffic.c
    return (
        c.name == split.name,
        c.candidate == split.candidate,
        c.percent == split.percent,
        c.updated_at == split.stamp,
    )


def _read(conn: Connection, name: str) -> TrafficSplit | None:
    table = t.model_traffic
    row = conn.execute(select(table).where(table.c.name == name)).first()
    return None if row is None else _split(row._asdict())


def _gone(conn: Connection, expected: TrafficSplit) -> ConflictError:
    found = _read(conn, expected.name)
    now = "cleared" if found is None else f"changed to {found.describe()}"
    return ConflictError(
        f"the traffic split of '{expected.name}' ({expected.describe()}) was {now} by "
        "someone else; check 'modelyard release history', then start the rollout again"
    )


def _running(name: str, split: TrafficSplit | None) -> ConflictError:
    shown = f"a split of '{name}'" if split is None else split.describe()
    lease = ""
    if split is not None and split.expires_at is not None:
        lease = f" (its lease runs to {split.expires_at:%Y-%m-%d %H:%M:%S} UTC unless renewed)"
    return ConflictError(
        f"{shown} is already set{lease}; a canary may be running: wait for it to finish, "
        f"or stop it with 'modelyard release canary {name} --stop'"
    )


def _split(row: dict[str, Any]) -> TrafficSplit:
    return TrafficSplit(
        row["name"],
        row["candidate"],
        float(row["percent"]),
        _when(row["updated_at"]),
        _time.to_datetime(row["expires_at"]),
        int(row["updated_at"]),
    )


def _when(us: int) -> datetime:
    when = _time.to_datetime(us)
    assert when is not None
    return when
