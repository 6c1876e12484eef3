"""Push: the streaming ingestion path. Rows are checked against the view (see
``_row_checks`` for which declared checks a push runs), appended to the offline store as
a Parquet file of their own, and written to the online store. A rejected push writes
nothing to either store.

Offline reads of a view take the union of its source and its pushed files; a pushed
row counts as written after every source row (``__tier``), and later pushes after
earlier ones (files are named by push time), so ties resolve to the newest write.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelyard import _time
from modelyard._files import atomic_path
from modelyard.errors import InvalidInputError
from modelyard.features._backfill import backfill_folder, covered_sql
from modelyard.features._row_checks import check_pushed_rows
from modelyard.features._sources import literal, to_arrow
from modelyard.features._typing import check_source_columns, duck_type_of

if TYPE_CHECKING:
    from modelyard.features._definitions import FeatureView


def push_folder(offline_root: Path, view: str) -> Path:
    return offline_root / "push" / view


def view_rows_sql(view: FeatureView, offline_root: Path | None, version: int | None = None) -> str:
    """The view's rows: source (or backfilled partitions where covered) plus pushed rows,
    with write-order columns."""
    base = f"SELECT *, 0 AS __tier FROM ({view.source.sql()})"
    if offline_root is None:
        return base
    if version is not None:
        backfilled = covered_sql(view, backfill_folder(offline_root, view.name, version))
        if backfilled is not None:
            files, outside = backfilled
            base = f"{base} WHERE {outside}"
            if files is not None:
                base = f"{base} UNION ALL BY NAME {files}"
    folder = push_folder(offline_root, view.name)
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return base
    pushed = (
        "SELECT * EXCLUDE (filename, file_row_number), filename AS __file, "
        "file_row_number AS __pos, 1 AS __tier FROM read_parquet("
        f"{literal(str(folder / '*.parquet'))}, filename = true, file_row_number = true, "
        "union_by_name = true)"
    )
    return f"{base} UNION ALL BY NAME {pushed}"


def prepare_rows(view: FeatureView, rows: Any) -> pa.Table:
    """Check ``rows`` against the view (columns, types, and the schema's and checks' rules
    that one row can break); return them as Arrow with only the view's columns."""
    if isinstance(rows, dict):
        rows = [rows]
    src = view.source
    created = src.created_timestamp_field
    table = rows if isinstance(rows, pa.Table) else None
    if table is None:
        if isinstance(rows, list):
            if not rows or not all(isinstance(r, dict) for r in rows):
                raise InvalidInputError("push takes a non-empty list of row dicts or a table")
            _check_aware(view, rows, [src.timestamp_field, *([created] if created else [])])
            try:
                table = pa.Table.from_pylist(rows)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidInputError(
                    f"push to '{view.name}': the rows do not form a table ({exc}); give each "
                    "column one type"
                ) from None
        else:
            table = to_arrow(rows)
    if table.num_rows == 0:
        raise InvalidInputError(f"nothing to push to feature view '{view.name}'")
    table = _type_null_features(view, table)
    if created is not None and created not in table.column_names:
        now = pa.scalar(_time.now_us(), pa.timestamp("us", tz="UTC"))
        table = table.append_column(created, pa.array([now] * table.num_rows))
    required = [(k, "join key") for k in view.entity.key_names]
    required.append((src.timestamp_field, "event time"))
    # A missing value of a key or time first: a column of nulls only has no type, and would
    # be refused as a mistyped source column.
    for column, what in required:
        if column in table.column_names and table[column].null_count:
            row = pc.index(pc.is_null(table[column]), True).as_py()
            raise InvalidInputError(
                f"push to '{view.name}': row {row} has no value for {what} '{column}'"
            )
    columns = {f.name: duck_type_of(f.type) for f in table.schema}
    check_source_columns(view, columns)
    wanted = [*view.entity.key_names, src.timestamp_field, *([created] if created else [])]
    wanted += view.feature_names
    table = table.select(wanted)
    check_pushed_rows(view, table)
    return table


# The Arrow type a feature's declared dtype is stored as, for columns with only nulls.
_NULL_AS: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def _type_null_features(view: FeatureView, table: pa.Table) -> pa.Table:
    """A feature column of nulls only (a value not known now) takes its declared type:
    Arrow types a column by its values, so it would be refused as "found NULL". A NaN is
    a null too, as pandas reads it: rows given as dicts keep float('nan') as a value, which
    no null check or range would catch, and which a model would then be served."""
    for field in view.features:
        if field.name not in table.column_names:
            continue
        column = table[field.name]
        if pa.types.is_null(column.type):
            column = pa.nulls(table.num_rows, _NULL_AS.get(field.dtype, pa.string()))
        elif pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        else:
            continue
        table = table.set_column(table.column_names.index(field.name), field.name, column)
    return table


def _check_aware(view: FeatureView, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Arrow would quietly read a naive datetime among aware ones as UTC; refuse it."""
    for i, row in enumerate(rows):
        for column in columns:
            value = row.get(column)
            if isinstance(value, datetime):
                _time.aware(value, f"push to '{view.name}': row {i} '{column}' =")


def write_pushed(offline_root: Path, view: str, table: pa.Table) -> Path:
    """Append ``table`` to the view's pushed rows: one new Parquet file, atomically."""
    folder = push_folder(offline_root, view)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    with atomic_path(folder / name) as tmp:
        pq.write_table(table, tmp)
    return folder / name
