"""The audit log: every admin action, who took it, from where and when.

Admin actions are alias moves, rollbacks, traffic changes and key changes. Each is
recorded by ``record`` inside the transaction that makes the change, so an action and
its record are written together or not at all. Who acts comes from ``acting_as``: the
server names the request's key and client address; the command line names its user
(``MODELYARD_ACTOR`` or the login name) and host.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from modelyard._time import now_us, to_datetime, to_us
from modelyard.backends.metadata import MetadataStore, tables


@dataclass(frozen=True)
class Actor:
    """Who acts: a key (``key_id``) or the command line's user (no key)."""

    name: str
    source: str
    key_id: str | None = None

    def describe(self) -> str:
        key = f" with key {self.key_id}" if self.key_id else ""
        return f"{self.name}{key} from {self.source}"


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    action: str
    target: str
    details: Mapping[str, Any]
    actor: str
    key_id: str | None
    source: str


_acting: ContextVar[Actor | None] = ContextVar("modelyard_actor", default=None)


def command_line_actor(environ: Mapping[str, str] | None = None) -> Actor:
    """The user at this terminal (or a CI job that names itself in ``MODELYARD_ACTOR``)."""
    env = os.environ if environ is None else environ
    name = env.get("MODELYARD_ACTOR")
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no login name in some containers
            name = f"uid:{os.getuid()}"
    return Actor(name=name, source=f"cli@{socket.gethostname()}")


def current_actor() -> Actor:
    """Who is acting in this context: ``acting_as``'s actor, else the command line's user."""
    return _acting.get() or command_line_actor()


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Attribute the admin actions taken inside the block to ``actor``."""
    token = _acting.set(actor)
    try:
        yield actor
    finally:
        _acting.reset(token)


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
