"""Apply Alembic migrations on open, once, even when several processes open at the same time.

The common case (schema already at ``HEAD``) is one SELECT, so opening a workspace
stays cheap; only an out-of-date database loads Alembic, under a lock that the
caller's back end provides (a file lock for SQLite, an advisory lock for PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text

HEAD = "0009"
MIGRATIONS = Path(__file__).with_name("migrations")


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def upgrade(conn: Connection) -> None:
    """Bring the database on ``conn`` to ``HEAD`` (the caller holds the migration lock)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
