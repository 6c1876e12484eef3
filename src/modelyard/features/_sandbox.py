"""A stored SQL source reads only the files its view declares.

A ``SqlSource`` query is stored in the metadata database and run by every command that
reads the view; DuckDB would let it read any file the process can (``read_text('/etc/
shadow')``, a credentials file). The query runs instead in its own DuckDB connection
that may open only the declared ``paths``: ``allowed_directories`` and ``allowed_paths``
are set, then ``enable_external_access`` is turned off (which is what makes those the
only ones) and ``lock_configuration`` on (so the query cannot ``SET`` it back). Its rows
are streamed into a Parquet snapshot in this process's temporary folder, which the rest
of the pipeline reads like any file source.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    import duckdb

_BATCH_ROWS = 100_000


def sandboxed(paths: Sequence[str]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that can read ``paths`` (files, folders, globs) and nothing else."""
    import duckdb

    folders: list[str] = []
    files: list[str] = []
    for given in paths:
        path = Path(given).expanduser()
        if glob.has_magic(str(path)):
            fixed = [p for p in path.parts[: _first_magic(path.parts)]]
            folders.append(str(Path(*fixed).resolve()) + "/")
        elif path.is_dir():
            folders.append(str(path.resolve()) + "/")
        else:
            files.append(str(path.resolve()))
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.execute("SET allowed_directories = $1", [folders])
    con.execute("SET allowed_paths = $1", [files])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def snapshot_query(query: str, paths: Sequence[str], target: Path) -> Path:
    """Run ``query`` sandboxed to ``paths``; stream its rows into the Parquet ``target``."""
    import duckdb
    import pyarrow.parquet as pq

    con = sandboxed(paths)
    try:
        reader = con.sql(f"SELECT * FROM ({query})").to_arrow_reader(_BATCH_ROWS)
        with pq.ParquetWriter(target, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
    except duckdb.PermissionException as exc:
        first = str(exc).splitlines()[0].removeprefix("Permission Error: ")
        declared = ", ".join(paths) or "none"
        relative = any(not Path(p).expanduser().is_absolute() for p in paths)
        where = (
            f"; relative paths are read from the current folder ({Path.cwd()}): run from "
            "the folder they are relative to, or declare absolute paths"
            if relative
            else ""
        )
        raise InvalidInputError(
            f"the SQL source may read only the paths its view declares ({declared}): "
            f"{first}; add the path to SqlSource(paths=[...]) if the view should read it"
            f"{where}"
        ) from None
    except duckdb.Error as exc:
        raise InvalidInputError(
            f"the SQL source failed: {str(exc).splitlines()[0]}; fix its query"
        ) from None
    finally:
        con.close()
    return target


def _first_magic(parts: Sequence[str]) -> int:
    return next(i for i, part in enumerate(parts) if glob.has_magic(part))
