"""The release record: every gate check, promotion, rollback and canary step, kept.

Who moved which model where, when, and on what evidence is the first question after an
incident; each release action appends one row and nothing rewrites it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from modelyard import _time
from modelyard.backends.metadata import MetadataStore
from modelyard.backends.metadata import tables as t
from modelyard.release._gates import GateResult
from modelyard.security import command_line_actor

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class ReleaseRecord:
    """One release action as recorded."""

    id: int
    model: str
    action: str
    actor: str
    at: datetime
    alias: str | None
    from_version: int | None
    to_version: int | None
    passed: bool | None
    reason: str | None
    details: Mapping[str, Any]

    @property
    def failed_gates(self) -> list[GateResult]:
        """The gates whose failure the action recorded (a check, a promotion, a canary's
        gates: their report is in ``details``); empty for an action that judged none."""
        rows = self.details.get("gates") if isinstance(self.details, Mapping) else None
        if not isinstance(rows, list):
            return []
        return [_failed(r) for r in rows if isinstance(r, Mapping) and r.get("outcome") == "fail"]


def _failed(row: Mapping[str, Any]) -> GateResult:
    """A failed row as ``GateResult.to_json_dict`` recorded it."""

    def number(key: str) -> float | None:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None  # null: the check had no value (an undefined metric, no champion)
        return float(value)

    return GateResult(
        str(row.get("gate", "")),
        "fail",
        number("candidate"),
        number("champion"),
        number("threshold"),
        str(row.get("note") or ""),
    )


def current_actor(environ: Mapping[str, str] | None = None) -> str:
    """Who acts: ``MODELYARD_ACTOR`` of ``environ`` (a CI job names itself), else the login
    name; ``environ`` defaults to ``os.environ``."""
    return command_line_actor(environ).name  # the audit log names actors the same way


def actor_of(ws: Workspace, given: str | None = None) -> str:
    """``given``, else ``current_actor`` of the environment ``ws`` was opened with.

    A Workspace built with ``environ=`` (a test, an embedding service) reads its settings
    from that mapping, never from ``os.environ``; its actor comes from there too.
    """
    if given:
        return given
    return current_actor(ws.environ)


def record(
    store: MetadataStore,
    *,
    model: str,
    action: str,
    actor: str,
    alias: str | None = None,
    from_version: int | None = None,
    to_version: int | None = None,
    passed: bool | None = None,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one release action to the record."""
    with store.write() as conn:
        write_record(
            conn,
            model=model,
            action=action,
            actor=actor,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            passed=passed,
            reason=reason,
            details=details,
        )


def write_record(
    conn: Connection,
    *,
    model: str,
    action: str,
    actor: str,
    alias: str | None = None,
    from_version: int | None = None,
    to_version: int | None = None,
    passed: bool | None = None,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """``record`` in the caller's transaction: an alias move and its record commit together."""
    row = {
        "model": model,
        "action": action,
        "actor": actor,
        "alias": alias,
        "from_version": from_version,
        "to_version": to_version,
        "passed": None if passed is None else int(passed),
        "reason": reason,
        "details": dict(details or {}),
        "at": _time.now_us(),
    }
    conn.execute(insert(t.release_records), [row])


def release_history(
    store: MetadataStore, model: str | None = None, *, limit: int = 50
) -> list[ReleaseRecord]:
    """The newest ``limit`` release actions (of ``model``, or of every model), newest first."""
    table = t.release_records
    query = select(table).order_by(table.c.id.desc()).limit(limit)
    if model is not None:
        query = query.where(table.c.model == model)
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [
        ReleaseRecord(
            id=r.id,
            model=r.model,
            action=r.action,
            actor=r.actor,
            at=_time.to_datetime(r.at),  # the column is NOT NULL
            alias=r.alias,
            from_version=r.from_version,
            to_version=r.to_version,
            passed=None if r.passed is None else bool(r.passed),
            reason=r.reason,
            details=r.details,
        )
        for r in rows
    ]
