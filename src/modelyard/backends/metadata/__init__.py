"""Metadata back end: runs, metrics, models and aliases in SQL, chosen by URL.

``sqlite:///PATH`` (default, embedded) or ``postgresql://…``. Both are SQLAlchemy
engines with Alembic migrations applied on open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import Connection, Table

from modelyard._redact import redact
from modelyard.backends.metadata import _tables as tables
from modelyard.backends.metadata._series import latest_monitor_metrics
from modelyard.backends.metadata._store import SqlStore
from modelyard.errors import ConfigError

__all__ = [
    "MetadataStore",
    "SCHEMES",
    "latest_monitor_metrics",
    "open_metadata",
    "redact",
    "tables",
]


class MetadataStore(Protocol):
    url: str
    dialect: str

    def open(self) -> None: ...
    def close(self) -> None: ...
    def write(self) -> AbstractContextManager[Connection]: ...
    def read(self) -> AbstractContextManager[Connection]: ...
    def upsert(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[dict[str, Any]],
        *,
        keys: Sequence[str],
        update: Sequence[str],
        where: Any = None,
    ) -> None: ...
    def insert_missing(
        self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str]
    ) -> None: ...


def _sqlite(url: str, *, create: bool) -> SqlStore:
    from modelyard.backends.metadata.sqlite import SqliteStore

    return SqliteStore(url, create=create)


def _postgresql(url: str, *, create: bool) -> SqlStore:
    # A server's database is made by its administrator: opening one never creates it.
    from modelyard.backends.metadata.postgresql import PostgresStore

    return PostgresStore(url)


SCHEMES: dict[str, Callable[..., SqlStore]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "postgresql+psycopg": _postgresql,
    "postgres": _postgresql,
}


def open_metadata(url: str, *, create: bool = True) -> MetadataStore:
    """Build (not yet connect) the metadata store for ``url``.

    ``create=False`` refuses, when the store opens, a SQLite file that does not exist
    (a wrong path would otherwise become a new, empty database).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    factory = SCHEMES.get(scheme)
    if factory is None:
        raise ConfigError(
            f"metadata URL {redact(url)!r} has unknown scheme {scheme!r}; "
            f"use one of: {', '.join(s + '://' for s in SCHEMES)}, or https:// (a team server)"
        )
    return factory(url, create=create)
