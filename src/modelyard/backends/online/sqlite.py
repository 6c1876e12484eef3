"""SQLite online store (the embedded default): one WITHOUT ROWID table per view.

The read path talks to ``sqlite3`` directly: SQLAlchemy's per-statement overhead is
larger than the primary-key lookup itself, and this call sits in every prediction.
A connection per thread, because a sqlite3 connection must not cross threads.

Only a store opened with ``create=True`` (the default file inside the workspace) may
appear by itself. Any other file is created by the first write (materialize, push), never
by opening or reading it: a mistyped ``online.url`` must not become a new, empty store
that answers "missing" for every key.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from modelyard.backends.online import OnlineRow
from modelyard.errors import BackendUnavailableError, ConfigError, OnlineStoreMissingError

_NAME = re.compile(r"[A-Za-z0-9_]+")


def table_name(view: str) -> str:
    # View names are checked elsewhere; quoting keeps any name safe as an identifier.
    return '"fv_' + view.replace('"', '""') + '"'


class SqliteOnlineStore:
    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.path = url.split(":///", 1)[1] if ":///" in url else ":memory:"
        self.create = create or self.path in ("", ":memory:")
        self._local = threading.local()
        self._known: set[str] = set()

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({self.url!r})"

    def open(self) -> None:
        if self.create:
            self._conn()
            return
        folder = Path(self.path).parent
        if not folder.is_dir():
            raise ConfigError(
                f"online store {self.path}: its folder {folder} does not exist; fix "
                "online.url, or create the folder"
            )
        if Path(self.path).exists():
            self._conn()

    def ping(self) -> None:
        """Raise ``OnlineStoreMissingError`` while the store's file does not exist."""
        self._conn(write=False)

    def _conn(self, *, write: bool = True) -> sqlite3.Connection:
        """This thread's connection; only ``write`` (or ``create``) may create the file."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.create and self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            elif not write and not self.create and not Path(self.path).exists():
                raise OnlineStoreMissingError(
                    f"online store {self.path} does not exist: nothing was materialized or "
                    "pushed there; fix online.url or run 'modelyard features materialize'"
                )
            try:
                conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise BackendUnavailableError(
                    f"cannot open the online store {self.path}: {exc}; check the path and "
                    "its permissions"
                ) from None
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _ensure(self, conn: sqlite3.Connection, view: str) -> str:
        name = table_name(view)
        if view not in self._known:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} "
                "(k BLOB PRIMARY KEY, ts INTEGER NOT NULL, v BLOB NOT NULL) WITHOUT ROWID"
            )
            self._known.add(view)
        return name

    def write(self, view: str, rows: Sequence[OnlineRow]) -> None:
        if not rows:
            return
        conn = self._conn()
        try:
            self._upsert(conn, self._ensure(conn, view), rows)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            self._known.discard(view)  # another process dropped it since: make it again
            self._upsert(conn, self._ensure(conn, view), rows)

    @staticmethod
    def _upsert(conn: sqlite3.Connection, name: str, rows: Sequence[OnlineRow]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"INSERT INTO {name} (k, ts, v) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE "
                "SET ts = excluded.ts, v = excluded.v WHERE excluded.ts >= ts",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def read(self, view: str, keys: Sequence[bytes]) -> list[tuple[int, bytes] | None]:
        conn = self._conn(write=False)
        try:
            return self._select(conn, table_name(view), keys)
        except sqlite3.OperationalError as exc:
            # A view never written, or dropped (by this process or another): no rows. A
            # read does not create its table, so a reader racing a drop leaves none behind.
            if "no such table" not in str(exc):
                raise
            self._known.discard(view)
            return [None] * len(keys)

    def _select(
        self, conn: sqlite3.Connection, name: str, keys: Sequence[bytes]
    ) -> list[tuple[int, bytes] | None]:
        if len(keys) == 1:
            row = conn.execute(f"SELECT ts, v FROM {name} WHERE k = ?", (keys[0],)).fetchone()
            return [row]
        found: dict[bytes, tuple[int, bytes]] = {}
        # SQLite allows 32,766 parameters; batches keep far below it.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for k, ts, v in conn.execute(
                f"SELECT k, ts, v FROM {name} WHERE k IN ({marks})", chunk
            ):
                found[k] = (ts, v)
        return [found.get(k) for k in keys]

    def drop(self, view: str) -> None:
        try:
            conn = self._conn(write=False)
        except OnlineStoreMissingError:
            return  # a store that does not exist holds no view to drop
        conn.execute(f"DROP TABLE IF EXISTS {table_name(view)}")
        self._known.discard(view)
