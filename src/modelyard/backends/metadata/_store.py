"""The SQL metadata store shared by the SQLite and PostgreSQL back ends.

SQLAlchemy already speaks both dialects, so the two back ends differ only in how
they connect, lock for migrations and spell an upsert; everything else lives here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.exc import DBAPIError, OperationalError

from modelyard._redact import redact
from modelyard.backends.metadata import _migrate
from modelyard.errors import BackendUnavailableError


class SqlStore:
    """A metadata store on one SQLAlchemy engine; subclasses build the engine and lock."""

    dialect: str = ""
    _remedy = "check that the server is running and metadata.url is right"
    _insert: Any = None  # the dialect's insert(), which knows ON CONFLICT

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._upserts: dict[tuple[Any, ...], Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r})"

    # -- subclass hooks ---------------------------------------------------------------
    def _create_engine(self) -> Engine:
        raise NotImplementedError

    def _migration_lock(self, conn: Connection) -> AbstractContextManager[None]:
        raise NotImplementedError

    def upsert(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[dict[str, Any]],
        *,
        keys: Sequence[str],
        update: Sequence[str],
        where: Any = None,
    ) -> None:
        """Insert ``rows``; on a key conflict update the ``update`` columns (if ``where``).

        ``where(table, excluded)`` returns the condition under which a conflict updates.
        Rows must not repeat a key: PostgreSQL batches them into one statement.
        """
        if not rows:
            return
        # Building an ON CONFLICT statement makes new column proxies each time, which
        # costs more than running it; the statement depends only on these arguments.
        cache_key = (table.name, tuple(keys), tuple(update), where)
        stmt = self._upserts.get(cache_key)
        if stmt is None:
            base = self._insert(table)
            stmt = base.on_conflict_do_update(
                index_elements=list(keys),
                set_={c: base.excluded[c] for c in update},
                where=where(table, base.excluded) if where is not None else None,
            )
            self._upserts[cache_key] = stmt
        conn.execute(stmt, list(rows))

    def insert_missing(
        self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str]
    ) -> None:
        """Insert the ``rows`` whose ``keys`` (a unique constraint) are not there yet."""
        if rows:
            stmt = self._insert(table).on_conflict_do_nothing(index_elements=list(keys))
            conn.execute(stmt, list(rows))

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self.open()
        assert self._engine is not None
        return self._engine

    def open(self) -> None:
        """Connect, and migrate the schema to the current revision if it is behind."""
        if self._engine is not None:
            return
        engine = self._create_engine()
        try:
            with engine.connect() as conn:
                if _migrate.current_revision(conn) != _migrate.HEAD:
                    conn.commit()
                    with self._migration_lock(conn):
                        if _migrate.current_revision(conn) != _migrate.HEAD:
                            _migrate.upgrade(conn)
                            conn.commit()
        except (OperationalError, DBAPIError) as exc:
            engine.dispose()
            reason = redact(str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc))
            raise BackendUnavailableError(
                f"cannot open the metadata database {redact(self.url)}: {reason}; {self._remedy}"
            ) from None
        self._engine = engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection (takes no write lock)."""
        with self.engine.connect() as conn:
            conn.execution_options(modelyard_read=True)
            yield conn
