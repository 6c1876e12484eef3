"""Feature sources: where a view's rows come from, as a DuckDB relation.

Every source becomes SQL that yields the view's columns plus its event time, its
created time (or NULL) and a write order (``__file``, ``__pos``) that breaks the last
ties: for Parquet, a later file name then a later row is "written later".
A DataFrame source is written to the offline store as Parquet on ``apply``, so that a
stored definition never points at memory that is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from modelyard._redact import redact
from modelyard._secrets import resolve
from modelyard.errors import InvalidInputError
from modelyard.features._sandbox import snapshot_query


def quote(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Source(Protocol):
    @property
    def timestamp_field(self) -> str: ...

    @property
    def created_timestamp_field(self) -> str | None: ...

    def sql(self) -> str:
        """A SELECT over the source with ``__file`` and ``__pos`` (write order) added."""
        ...

    def spec(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FileSource:
    """Parquet: one file, a folder (every ``*.parquet`` below it) or a glob."""

    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None

    def _files(self) -> str:
        """The DuckDB file argument: the glob or file as given, or a folder's files.

        A folder lists its ``*.parquet`` files here, skipping hidden files and folders
        (``.modelyard/``, temporary ``.x.tmp`` files), which a ``**`` glob would read.
        """
        if any(c in self.path for c in "*?[") or "://" in self.path:
            return literal(self.path)
        root = Path(self.path)
        if not root.is_dir():
            return literal(self.path)
        files = sorted(
            str(p)
            for p in root.rglob("*.parquet")
            if not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if not files:
            raise InvalidInputError(f"folder {self.path!r} holds no .parquet files")
        return "[" + ", ".join(literal(f) for f in files) + "]"

    def sql(self) -> str:
        return (
            "SELECT * EXCLUDE (filename, file_row_number), filename AS __file, "
            "file_row_number AS __pos FROM read_parquet("
            f"{self._files()}, filename = true, file_row_number = true)"
        )

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "parquet",
            "path": self.path,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
        }


@dataclass(frozen=True)
class SqlSource:
    """A DuckDB query over the files in ``paths`` (files, folders or globs): it may read
    those and nothing else (``_sandbox.py``), whatever the stored query says."""

    query: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.paths, str):  # paths="x.parquet" would allow each character
            object.__setattr__(self, "paths", (self.paths,))

    def snapshot(self) -> Path:
        """Run the query now, sandboxed, into a Parquet file; return its path."""
        target = _snapshot_dir() / f"sql-{uuid.uuid4().hex}.parquet"
        return snapshot_query(self.query.rstrip().rstrip(";"), self.paths, target)

    def sql(self) -> str:
        # The snapshot keeps the query's own row order, which is then the write order.
        return FileSource(str(self.snapshot())).sql()

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "sql",
            "query": self.query,
            "paths": list(self.paths),
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
        }


@dataclass(frozen=True)
class PostgresSource:
    """A PostgreSQL table or query, read with psycopg at each use.

    DuckDB's own postgres extension is downloaded at run time, which a closed network
    forbids; instead the rows are fetched in batches into a Parquet snapshot in a
    temporary folder of this process, and DuckDB reads that. ``url`` may be
    ``env:NAME`` to keep credentials out of the stored definition.
    """

    url: str
    table: str | None = None
    query: str | None = None
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise InvalidInputError("a PostgresSource takes exactly one of table= or query=")

    def __repr__(self) -> str:
        what = f"table={self.table!r}" if self.table is not None else f"query={self.query!r}"
        return f"PostgresSource({redact(self.url)!r}, {what})"

    def _dsn(self) -> str:
        url = str(resolve(self.url, "PostgresSource url"))  # env:NAME or file:/path too
        return url.replace("postgresql+psycopg://", "postgresql://", 1)

    def _select(self) -> str:
        if self.query is not None:
            return self.query.rstrip().rstrip(";")
        parts = [p.replace('"', '""') for p in str(self.table).split(".")]
        return "SELECT * FROM " + ".".join(f'"{p}"' for p in parts)

    def snapshot(self) -> Path:
        """Fetch the rows now into a Parquet file; return its path."""
        try:
            import psycopg
        except ImportError:
            raise InvalidInputError(
                "PostgresSource needs psycopg; run: pip install 'modelyard[postgres]'"
            ) from None
        import pyarrow.parquet as pq

        path = _snapshot_dir() / f"pg-{uuid.uuid4().hex}.parquet"
        writer: pq.ParquetWriter | None = None
        try:
            with psycopg.connect(self._dsn(), connect_timeout=5) as conn:
                conn.execute("SET TIME ZONE 'UTC'")
                with conn.cursor(name="modelyard_source") as cur:
                    cur.execute(self._select())
                    while rows := cur.fetchmany(50_000):
                        names = [d.name for d in cur.description or []]
                        batch = pa.Table.from_pylist(
                            [dict(zip(names, r, strict=True)) for r in rows]
                        )
                        if writer is None:
                            writer = pq.ParquetWriter(path, batch.schema)
                        writer.write_table(batch.cast(writer.schema))
        except psycopg.Error as exc:
            raise InvalidInputError(
                f"cannot read the PostgreSQL source: {redact(str(exc).strip().splitlines()[0])}"
            ) from None
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise InvalidInputError(f"the PostgreSQL source ({self._select()}) returned no rows")
        return path

    def sql(self) -> str:
        return FileSource(str(self.snapshot())).sql()

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "postgres",
            "url": self.url,
            "table": self.table,
            "query": self.query,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
        }


_SNAPSHOTS: list[Path] = []


def _snapshot_dir() -> Path:
    """A temporary folder for this process's source snapshots, removed at exit."""
    if not _SNAPSHOTS:
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="modelyard-snapshots-"))
        atexit.register(shutil.rmtree, folder, True)
        _SNAPSHOTS.append(folder)
    return _SNAPSHOTS[0]


@dataclass(frozen=True, eq=False)
class FrameSource:
    """A pandas, Arrow or polars table in memory; stored as Parquet when applied."""

    frame: Any
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None

    def arrow(self) -> pa.Table:
        return to_arrow(self.frame)

    def sql(self) -> str:
        raise InvalidInputError(
            "a DataFrame source is read after 'ws.features.apply([...])' stores it; "
            "apply the view first"
        )

    def spec(self) -> dict[str, Any]:
        raise InvalidInputError("a DataFrame source has no stored form until it is applied")


def to_arrow(frame: Any) -> pa.Table:
    """pandas, polars or Arrow to an Arrow table (no index)."""
    if isinstance(frame, pa.Table):
        return frame
    module = type(frame).__module__.split(".", 1)[0]
    if module == "polars":
        return frame.to_arrow()
    if module == "pandas":
        return pa.Table.from_pandas(frame, preserve_index=False)
    raise InvalidInputError(f"expected a pandas, polars or Arrow table, got {type(frame).__name__}")


def source_from_spec(spec: Mapping[str, Any]) -> Source:
    kind = spec.get("kind")
    common = {
        "timestamp_field": spec["timestamp_field"],
        "created_timestamp_field": spec.get("created_timestamp_field"),
    }
    if kind == "parquet":
        return FileSource(spec["path"], **common)
    if kind == "sql":
        return SqlSource(spec["query"], paths=tuple(spec.get("paths", ())), **common)
    if kind == "postgres":
        return PostgresSource(spec["url"], spec.get("table"), spec.get("query"), **common)
    raise InvalidInputError(f"unknown source kind {kind!r} in a stored feature view")
