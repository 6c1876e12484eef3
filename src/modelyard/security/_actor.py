"""Who acts, for the audit log: a request's key, or the user of this process.

Kept apart from the audit log itself (which needs SQLAlchemy) so that the command line
can name its user at start-up without loading the database layer.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who acts: a key (``key_id``) or the command line's user (no key)."""

    name: str
    source: str
    key_id: str | None = None

    def describe(self) -> str:
        key = f" with key {self.key_id}" if self.key_id else ""
        return f"{self.name}{key} from {self.source}"


_acting: ContextVar[Actor | None] = ContextVar("modelyard_actor", default=None)


def command_line_actor(environ: Mapping[str, str] | None = None, via: str = "cli") -> Actor:
    """The user at this terminal (or a CI job that names itself in ``MODELYARD_ACTOR``),
    acting ``via`` the command line or (``"python"``) the Python API."""
    env = os.environ if environ is None else environ
    name = env.get("MODELYARD_ACTOR")
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no login name in some containers
            name = f"uid:{os.getuid()}"
    return Actor(name=name, source=f"{via}@{socket.gethostname()}")


def current_actor() -> Actor:
    """Who is acting in this context: ``acting_as``'s actor (the command line sets its
    own, the server the request's key), else this process's user via the Python API."""
    return _acting.get() or command_line_actor(via="python")


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Attribute the admin actions taken inside the block to ``actor``."""
    token = _acting.set(actor)
    try:
        yield actor
    finally:
        _acting.reset(token)
