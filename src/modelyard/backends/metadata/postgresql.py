"""PostgreSQL metadata back end: the scale-out store that many workers and replicas share.

Every connection is bounded in time, so a database that is down or stops answering
fails a call instead of hanging it (libpq settings, see ``CONNECT_ARGS``): a connect
gives up after ``connect_timeout``; the server cancels a statement after
``statement_timeout``; TCP keepalives and ``tcp_user_timeout`` drop a connection whose
peer vanished (packets silently lost). Any of them given in the URL's query
(``?connect_timeout=10&options=-c%20statement_timeout%3D0``) wins over these defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.dialects.postgresql import insert

from modelyard.backends.metadata._store import SqlStore

# pg_advisory_lock key for schema migrations: any constant unique to modelyard.
_MIGRATION_LOCK = 0x6D6F64656C79

STATEMENT_TIMEOUT_MS = 60_000
CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 3,  # seconds, for the whole connection set-up (libpq's minimum is 2)
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # ms that sent data may stay unacknowledged
}


def connect_args(query: dict[str, Any]) -> dict[str, Any]:
    """libpq arguments: ``CONNECT_ARGS`` and the statement timeout, unless the URL sets them.

    SQLAlchemy lets ``connect_args`` replace a URL's query value, so ``options`` (which
    the URL may use for ``search_path``) is extended rather than replaced.
    """
    args = {k: v for k, v in CONNECT_ARGS.items() if k not in query}
    options = query.get("options", "")
    if isinstance(options, tuple):  # the key was given more than once
        options = " ".join(options)
    if "statement_timeout" not in options:
        args["options"] = f"{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
    return args


class PostgresStore(SqlStore):
    dialect = "postgresql"
    _insert = staticmethod(insert)

    def _create_engine(self) -> Engine:
        url = self.url
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            import psycopg  # noqa: F401
        except ImportError:
            from modelyard.errors import ConfigError

            raise ConfigError(
                "metadata.url is a PostgreSQL URL but psycopg is not installed; "
                "run: pip install 'modelyard[postgres]'"
            ) from None
        query = dict(make_url(url).query)
        return create_engine(url, pool_pre_ping=True, pool_size=5, connect_args=connect_args(query))

    @contextmanager
    def _migration_lock(self, conn: Connection) -> Iterator[None]:
        # Waiting for another process's migration, and migrating, may take longer than
        # a statement should: no statement timeout until the lock is released.
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            conn.execute(text("RESET statement_timeout"))
            conn.commit()
