"""Alias moves that check where the alias points in the transaction that moves it.

A release judges a candidate against the version an alias points at, then moves the
alias; meanwhile someone may move it too (another promotion, a rollback). Checking
first and setting later, in two transactions, would apply a decision to a state it
was not made on and record the wrong "from" version. Here the check is the ``WHERE``
of the ``UPDATE`` that moves the alias (a compare-and-set), and ``also`` runs in the
same transaction, so what the caller records (the release record) commits with the
move or not at all, and names the version really replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard import _time
from modelyard.backends.metadata import tables as t
from modelyard.errors import ConflictError
from modelyard.registry._refs import ModelRef, check_alias, check_name
from modelyard.registry._traffic import TrafficSplit, take_split

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from modelyard.registry._registry import Registry
    from modelyard.registry._versions import ModelVersion


@dataclass(frozen=True)
class AliasMove:
    """``name@alias`` moved from ``from_version`` (None: it was not set) to ``to_version``."""

    name: str
    alias: str
    from_version: int | None
    to_version: int


Also = Callable[["Connection", AliasMove], None]
"""Called in the moving transaction, after the move (to write what must commit with it)."""


def move_alias(
    registry: Registry,
    name: str,
    alias: str,
    version: int,
    *,
    expect: int | None,
    clear_split: TrafficSplit | None = None,
    also: Also | None = None,
) -> ModelVersion:
    """Point ``name@alias`` at ``version`` if it still points at ``expect`` (None: unset).

    Raises ``ConflictError``, moving nothing, when the alias points elsewhere, or when
    ``clear_split`` (removed in the same transaction) was cleared or changed meanwhile.
    """
    check_alias(alias)
    target = registry.get(ModelRef(check_name(name), version=int(version)))
    table = t.model_aliases
    now = _time.now_us()
    try:
        with registry.metadata.write() as conn:
            if expect is None:
                row = {"name": name, "alias": alias, "version": target.version, "updated_at": now}
                conn.execute(insert(table), [row])  # an alias set meanwhile: IntegrityError
            else:
                moved = conn.execute(
                    update(table)
                    .where(table.c.name == name, table.c.alias == alias, table.c.version == expect)
                    .values(version=target.version, updated_at=now)
                ).rowcount
                if moved != 1:
                    raise _moved(name, alias, expect, _points_at(conn, name, alias))
            registry._alias_event(conn, name, alias, "set", target.version)
            if clear_split is not None and not take_split(conn, clear_split):
                raise ConflictError(
                    f"the traffic split of '{name}' ({clear_split.describe()}) was cleared or "
                    f"changed by someone else, so '{name}@{alias}' was not moved; check "
                    f"'modelyard release history {name}', then start the rollout again"
                )
            if also is not None:
                also(conn, AliasMove(name, alias, expect, target.version))
    except IntegrityError:
        # The transaction is gone (PostgreSQL aborts it): look again in a new one.
        with registry.metadata.read() as conn:
            raise _moved(name, alias, expect, _points_at(conn, name, alias)) from None
    return registry.get(ModelRef(name, version=target.version))


def rollback_alias(
    registry: Registry, name: str, alias: str, *, also: Also | None = None
) -> ModelVersion:
    """Move ``name@alias`` back to the version before its last move (``Registry.rollback``)."""
    check_alias(alias)
    with registry.metadata.write() as conn:
        stack = _alias_stack(registry, conn, check_name(name), alias)
        current = _points_at(conn, name, alias)
        if current is None:  # the registry's one-line error: no such model, or alias
            registry.get(ModelRef(name, alias=alias))
        if len(stack) < 2:
            raise ConflictError(
                f"'{name}@{alias}' has no earlier version to roll back to (version "
                f"{current} is the first in its history); set one with "
                f"'modelyard models alias {name} {alias} VERSION'"
            )
        target = stack[-2]
        table = t.model_aliases
        conn.execute(
            update(table)
            .where(table.c.name == name, table.c.alias == alias)
            .values(version=target, updated_at=_time.now_us())
        )
        registry._alias_event(conn, name, alias, "rollback", target)
        if also is not None:
            also(conn, AliasMove(name, alias, current, target))
    return registry.get(ModelRef(name, version=target))


def rollback_target(registry: Registry, name: str, alias: str) -> int | None:
    """The version a rollback of ``name@alias`` would point it at (None: no earlier one)."""
    with registry.metadata.read() as conn:
        stack = _alias_stack(registry, conn, name, alias)
    return stack[-2] if len(stack) > 1 else None


def _alias_stack(registry: Registry, conn: Any, name: str, alias: str) -> list[int]:
    """The versions the alias went through, undone by rollbacks: a rollback pops one."""
    stack: list[int] = []
    for row in conn.execute(registry._events_query(name, alias)):
        if row.kind == "set" and (not stack or stack[-1] != row.version):
            stack.append(row.version)
        elif row.kind == "rollback":
            stack.pop()
        elif row.kind == "delete":
            stack.clear()
    return stack


def _points_at(conn: Connection, name: str, alias: str) -> int | None:
    table = t.model_aliases
    found = conn.execute(
        select(table.c.version).where(table.c.name == name, table.c.alias == alias)
    ).scalar()
    return None if found is None else int(found)


def _moved(name: str, alias: str, expected: int | None, now: int | None) -> ConflictError:
    where = "is not set" if now is None else f"points at version {now}"
    wanted = "unset" if expected is None else f"at version {expected}"
    return ConflictError(
        f"'{name}@{alias}' {where}, but this move expected it {wanted}: someone moved it "
        f"meanwhile, and nothing was moved; check 'modelyard release history {name}' and "
        "run again to judge against where it points now"
    )
