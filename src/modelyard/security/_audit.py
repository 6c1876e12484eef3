"""The audit log: every admin action, who took it, from where and when.

Admin actions are alias moves, rollbacks, traffic changes and key changes. Each is
recorded by ``record`` inside the transaction that makes the change, so an action and
its record are written together or not at all. Who acts comes from ``acting_as``: the
server names the request's key and client address; the command line names its user
(``MODELYARD_ACTOR`` or the login name) and host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from modelyard._time import now_us, to_datetime, to_us
from modelyard.backends.metadata import MetadataStore, tables
from modelyard.security._actor import Actor, acting_as, current_actor


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    action: str
    target: str
    details: Mapping[str, Any]
    actor: str
    key_id: str | None
    source: str


def record(conn: Connection, action: str, target: str, details: Mapping[str, Any]) -> str:
    """Record ``action`` on ``target`` in the caller's transaction; returns the actor's name."""
    actor = current_actor()
    conn.execute(
        tables.audit_events.insert(),
        {
            "at": now_us(),
            "action": action,
            "target": target,
            "details": dict(details),
            "key_id": actor.key_id,
            "actor": actor.name,
            "source": actor.source,
        },
    )
    return actor.name


def audit_events(
    metadata: MetadataStore,
    *,
    since: datetime | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """The newest ``limit`` events (newest first), filtered by time, action prefix, target."""
    a = tables.audit_events
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(a.c.at >= to_us(since, "--since"))
    if action:
        query = query.where(a.c.action.startswith(action, autoescape=True))
    if target:
        query = query.where(a.c.target == target)
    with metadata.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        AuditEvent(
            at=to_datetime(r["at"]),
            action=r["action"],
            target=r["target"],
            details=r["details"],
            actor=r["actor"],
            key_id=r["key_id"],
            source=r["source"],
        )
        for r in rows
    ]


SIGN_OUT = "ui.sign-out"


def signed_out(metadata: MetadataStore) -> dict[str, int]:
    """Each key's last dashboard sign-out (µs), from the audit log."""
    a = tables.audit_events
    last = func.max(a.c.at)
    query = select(a.c.target, last).where(a.c.action == SIGN_OUT).group_by(a.c.target)
    with metadata.read() as conn:
        return {str(target): int(at) for target, at in conn.execute(query)}


def record_session(metadata: MetadataStore, action: str, actor: Actor) -> int:
    """Record a dashboard sign-in or sign-out (``ui.sign-in``, ``SIGN_OUT``) of the key
    ``actor`` names; returns when (µs), which a server keeps to refuse older sessions."""
    assert actor.key_id is not None
    with acting_as(actor), metadata.write() as conn:
        record(conn, action, actor.key_id, {"name": actor.name})
    return now_us()
