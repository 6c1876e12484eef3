"""Feature sources: where a view's rows come from, as a DuckDB relation.

Every source becomes SQL that yields the view's columns plus its event time, its
created time (or NULL) and a write order (``__file``, ``__pos``) that breaks the last
ties: for Parquet, a later file name then a later row is "written later".
A DataFrame source is written to the offline store as Parquet on ``apply``, so that a
stored definition never points at memory that is gone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from modelyard.errors import InvalidInputError


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

    def _pattern(self) -> str:
        if any(c in self.path for c in "*?[") or "://" in self.path:
            return self.path
        if Path(self.path).is_dir():
            return os.path.join(self.path, "**", "*.parquet")
        return self.path

    def sql(self) -> str:
        return (
            "SELECT * EXCLUDE (filename, file_row_number), filename AS __file, "
            "file_row_number AS __pos FROM read_parquet("
            f"{literal(self._pattern())}, filename = true, file_row_number = true)"
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
    """A DuckDB query (it may read Parquet, CSV, or anything DuckDB can)."""

    query: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None

    def sql(self) -> str:
        # A query has no file; its own row order is the write order.
        return (
            "SELECT *, '' AS __file, row_number() OVER () AS __pos "
            f"FROM ({self.query.rstrip().rstrip(';')})"
        )

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "sql",
            "query": self.query,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
        }


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
        return SqlSource(spec["query"], **common)
    raise InvalidInputError(f"unknown source kind {kind!r} in a stored feature view")
