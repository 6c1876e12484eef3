"""PostgreSQL metadata back end: the scale-out store that many workers and replicas share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.dialects.postgresql import insert

from modelyard.backends.metadata._store import SqlStore

# pg_advisory_lock key for schema migrations: any constant unique to modelyard.
_MIGRATION_LOCK = 0x6D6F64656C79


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
        return create_engine(
            url, pool_pre_ping=True, pool_size=5, connect_args={"connect_timeout": 5}
        )

    @contextmanager
    def _migration_lock(self, conn: Connection) -> Iterator[None]:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
