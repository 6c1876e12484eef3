"""The churn pipeline's daily scores: every active customer's churn score and offer
decision, written to a SQL table with their lineage, one day at a time.

The table (``churn_scores``) lives where ``url`` points: a SQLite file in the workspace
by default, PostgreSQL when configured (SQLAlchemy either way). Each row carries what
made it: the model name and version, the feature service and its version, the training
run, when it was scored and the fingerprint of the day's inputs. Writing a day deletes
that day's rows and inserts the new ones in one transaction: a rerun replaces the day,
and a reader never sees half of one.

The rows go in through the driver, not SQLAlchemy's ``insert()``: an executemany of
plain tuples on SQLite (or another database), ``COPY`` on PostgreSQL (psycopg 3).
SQLAlchemy builds a dict and runs its type processing per row, which made the table
write most of a day's scoring time (1.4 s of 2.5 s for 84,000 customers,
bench/churn.py); here the same bind processors run once per distinct value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError

from modelyard._redact import redact
from modelyard.blueprints.churn._features import SERVICE
from modelyard.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from modelyard.registry import ModelVersion
    from modelyard.workspace import Workspace

_META = MetaData()
SCORES = Table(
    "churn_scores",
    _META,
    Column("day", String(10), primary_key=True),
    Column("customer_id", String(64), primary_key=True),
    Column("score", Float, nullable=False),
    Column("offer", Boolean, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("feature_service", String(128), nullable=False),
    Column("feature_service_version", Integer, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("input_fingerprint", String(80), nullable=False),
)


def scores_frame(
    ws: Workspace, version: ModelVersion, scored: pd.DataFrame, day: str, input_fingerprint: str
) -> pd.DataFrame:
    """The rows of the scores table for ``day``: each customer of ``scored`` (the output
    of ``serving.score``: ``customer_id``, then the model's outputs), the offer decision
    at the version's threshold, and the lineage columns."""
    score = np.asarray(scored[_positive_column(scored)], dtype=np.float64)
    threshold = float(version.tags.get("threshold", 0.5))
    service_version = next(
        (v for kind, name, v in ws.features.list() if kind == "service" and name == SERVICE), 0
    )
    return pd.DataFrame(
        {
            "day": day,
            "customer_id": scored["customer_id"].astype(str).to_numpy(),
            "score": score,
            "offer": score >= threshold,
            "threshold": threshold,
            "model": version.name,
            "version": version.version,
            "feature_service": SERVICE,
            "feature_service_version": service_version,
            "run_id": version.run_id or "",
            "scored_at": datetime.now(UTC),
            "input_fingerprint": input_fingerprint,
        }
    )


def engine_url(url: str) -> str:
    """``postgresql://`` with the driver this package installs (psycopg 3), as
    SQLAlchemy would otherwise look for psycopg2."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@contextmanager
def _database(url: str) -> Iterator[Engine]:
    """An engine on the scores database with the table in place; a database that cannot
    be reached is one line naming it (SQLAlchemy's message ends with a link)."""
    try:
        engine = create_engine(engine_url(url))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"blueprint.scores_url {redact(url)} needs the driver {exc.name!r}; for "
            "PostgreSQL install modelyard[postgres]"
        ) from None
    except ArgumentError as exc:
        raise ConfigError(
            f"blueprint.scores_url {redact(url)} is not a database URL: {exc}"
        ) from None
    try:
        _META.create_all(engine, tables=[SCORES])
        yield engine
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise BackendUnavailableError(
            f"blueprint.scores_url: cannot reach the scores database {redact(url)} "
            f"({reason}); start it, fix scores_url, or leave it empty for the embedded "
            "SQLite file"
        ) from None
    finally:
        engine.dispose()


def check_database(url: str) -> None:
    """Fail now, before a day's outputs are replaced, when the scores table is out of reach."""
    with _database(url):
        pass


def write_scores(url: str, scores: pd.DataFrame) -> int:
    """Replace the days in ``scores`` with its rows, in one transaction; returns rows."""
    with _database(url) as engine, engine.begin() as conn:
        conn.execute(delete(SCORES).where(SCORES.c.day.in_(sorted(set(scores["day"])))))
        if len(scores):
            _insert(conn, scores)
    return len(scores)


def _insert(conn: Connection, scores: pd.DataFrame) -> None:
    names = [c.name for c in SCORES.c]
    dialect = conn.dialect
    columns = []
    for column in SCORES.c:
        series = scores[column.name]
        # Python values, not numpy's: every driver takes them (psycopg has no numpy.bool_).
        if pd.api.types.is_datetime64_any_dtype(series):
            values = list(series.dt.to_pydatetime())
        else:
            values = series.tolist()
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:  # once per distinct value: most columns hold one
            done = {v: process(v) for v in set(values)}
            values = [done[v] for v in values]
        columns.append(values)
    rows = list(zip(*columns, strict=True))
    if dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(f"COPY {SCORES.name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" if dialect.paramstyle == "qmark" else "%s" for _ in names)
    conn.exec_driver_sql(f"INSERT INTO {SCORES.name} ({', '.join(names)}) VALUES ({marks})", rows)


def scored_by(url: str, day: str) -> set[int]:
    """The model versions whose scores of ``day`` the table holds (empty: none)."""
    with _database(url) as engine, engine.connect() as conn:
        query = select(SCORES.c.version).where(SCORES.c.day == day).distinct()
        return set(conn.execute(query).scalars())


def read_scores(url: str, day: str | None = None) -> pd.DataFrame:
    """The stored scores (of ``day``), ordered by day and customer."""
    query = select(SCORES).order_by(SCORES.c.day, SCORES.c.customer_id)
    if day is not None:
        query = query.where(SCORES.c.day == day)
    with _database(url) as engine, engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in SCORES.c])


def _positive_column(predicted: pd.DataFrame) -> str:
    """The column of the churn class's probability (the model's second class)."""
    found = [c for c in predicted.columns if str(c).startswith("probability_")]
    return str(found[-1]) if found else "prediction"
