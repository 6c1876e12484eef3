"""Point-in-time correct training sets: for each entity row, the latest feature row of
each view with the same keys, event time <= the row's time and > that time minus ttl.

Runs as one DuckDB query. Per view, an ASOF join over (keys, event time) alone picks the
latest time at or before each entity row's time; the ttl is applied to that time (an
older row is older still, so nothing else could qualify); then only the feature rows at
the picked (keys, time) pairs are read back and reduced to the tie winner (latest created
time, then last written). Tie-breaking after the join instead of before it sorts a small
fraction of the rows: measured at 1M entity rows x 10M feature rows, 0.5x the time of a
plain dedup-then-ASOF query (bench/RESULTS.md). Entity rows keep their order and their
own columns. DuckDB spills to disk, so inputs larger than memory work; ``path=`` streams
the result into Parquet without holding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from modelyard._files import atomic_path
from modelyard.errors import InvalidInputError
from modelyard.features._definitions import FeatureRef, FeatureService, FeatureView
from modelyard.features._push import view_rows_sql
from modelyard.features._sources import literal, quote, to_arrow

if TYPE_CHECKING:
    from modelyard.features._registry import Definitions

Output = Literal["pandas", "arrow", "polars"]
_ROW = "__modelyard_row"


@dataclass(frozen=True)
class _Selection:
    view: FeatureView
    features: list[str]
    offline_root: Path | None = None
    version: int | None = None


def resolve(defs: Definitions, features: FeatureService | str | Sequence[str]) -> list[_Selection]:
    """A service (object or name) or ``view:feature`` refs -> views with their features."""
    if isinstance(features, FeatureService):
        refs = features.refs
    elif isinstance(features, str):
        refs = [FeatureRef.parse(features)] if ":" in features else defs.service(features).refs
    else:
        refs = [FeatureRef.parse(r) for r in features]
    chosen: dict[str, _Selection] = {}
    for ref in refs:
        if ref.view not in chosen:
            view, version = defs.versioned_view(ref.view)
            chosen[ref.view] = _Selection(view, [], defs.offline_root, version)
        sel = chosen[ref.view]
        names = (
            sel.view.feature_names if ref.feature == "*" else [sel.view.feature(ref.feature).name]
        )
        sel.features.extend(n for n in names if n not in sel.features)
    if not chosen:
        raise InvalidInputError("no features requested; pass a service or 'view:feature' refs")
    return list(chosen.values())


def _entity_table(frame: Any, timestamp_field: str, assume_utc: bool) -> pa.Table:
    table = to_arrow(frame)
    if timestamp_field not in table.column_names:
        raise InvalidInputError(
            f"the entity rows have no '{timestamp_field}' column; add the time each row is "
            "labelled at, or pass timestamp_field="
        )
    col = table[timestamp_field]
    if not pa.types.is_timestamp(col.type):
        raise InvalidInputError(
            f"entity column '{timestamp_field}' must hold timestamps, found {col.type}"
        )
    if col.type.tz is None:
        if not assume_utc:
            raise InvalidInputError(
                f"entity column '{timestamp_field}' has timestamps without a time zone; "
                "make them UTC-aware (pandas: .dt.tz_localize('UTC')) or pass assume_utc=True "
                "(--assume-utc on the command line)"
            )
        col = pc.assume_timezone(col, "UTC")
    try:
        col = col.cast(pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        raise InvalidInputError(
            f"entity column '{timestamp_field}' has times finer than a microsecond; round "
            "them (pandas: .dt.floor('us'))"
        ) from None
    table = table.set_column(table.column_names.index(timestamp_field), timestamp_field, col)
    return table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))


def _us(view: FeatureView) -> int:
    assert view.ttl is not None
    # Integer division of timedeltas: a float of seconds would drop microseconds.
    return view.ttl // timedelta(microseconds=1)


def _instant(value: Any) -> str:
    return f"TIMESTAMPTZ {literal(value.isoformat())}"


def _view_ctes(
    sel: _Selection, i: int, ts: str, bounds: tuple[Any, Any] | None
) -> tuple[list[str], str]:
    """The CTEs that answer one view, and the join that attaches its features.

    ``k{i}``: (keys, event time) of candidate rows only (16 bytes a row for the ASOF join
    to sort); ``m{i}``: per entity row, the matched (keys, time) within the ttl;
    ``w{i}``: the feature rows at the matched pairs only, reduced to the tie winner.
    Every row that ties on (keys, time) has the keys and time the ASOF join returned, so
    breaking ties after the join picks the same row as breaking them before it, on a
    small fraction of the rows.
    """
    view = sel.view
    src = view.source
    time_col = quote(src.timestamp_field)
    keys = [quote(k) for k in view.entity.key_names]
    created = quote(src.created_timestamp_field) if src.created_timestamp_field else "NULL"
    rows = view_rows_sql(view, sel.offline_root, sel.version)
    window = ""
    if bounds is not None:
        window = f" WHERE {time_col} <= {_instant(bounds[1])}"
        if view.ttl is not None:
            window += f" AND {time_col} > {_instant(bounds[0])} - INTERVAL {_us(view)} MICROSECONDS"
    fresh = ""
    if view.ttl is not None:
        fresh = f" WHERE k{i}.__ts > e.{ts} - INTERVAL {_us(view)} MICROSECONDS"
    on_keys = " AND ".join(f"e.{k} = k{i}.{k}" for k in keys)
    ctes = [
        f"r{i} AS ({rows})",
        f"k{i} AS (SELECT {', '.join(keys)}, {time_col} AS __ts FROM r{i}{window})",
        f"m{i} AS (SELECT e.{quote(_ROW)} AS __row, {', '.join(f'k{i}.{k}' for k in keys)}, "
        f"k{i}.__ts FROM __entities e ASOF JOIN k{i} ON {on_keys} AND e.{ts} >= k{i}.__ts{fresh})",
        f"w{i} AS (SELECT {', '.join(keys)}, {time_col} AS __ts, "
        f"{', '.join(quote(f) for f in sel.features)} FROM r{i} "
        f"SEMI JOIN m{i} ON {' AND '.join(f'r{i}.{k} = m{i}.{k}' for k in keys)} "
        f"AND r{i}.{time_col} = m{i}.__ts "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)}, {time_col} "
        f"ORDER BY {created} DESC NULLS LAST, __tier DESC, __file DESC, __pos DESC) = 1)",
    ]
    join = (
        f"LEFT JOIN m{i} ON m{i}.__row = e.{quote(_ROW)} "
        f"LEFT JOIN w{i} ON {' AND '.join(f'w{i}.{k} = m{i}.{k}' for k in keys)} "
        f"AND w{i}.__ts = m{i}.__ts"
    )
    return ctes, join


def build_query(
    selections: list[_Selection],
    entity_columns: list[str],
    timestamp_field: str,
    full_feature_names: bool,
    bounds: tuple[Any, Any] | None = None,
) -> str:
    """The whole join as SQL over ``__entities``; ``bounds`` (min, max entity time) prune."""
    ts = quote(timestamp_field)
    ctes: list[str] = []
    joins: list[str] = []
    outputs: list[str] = []
    seen = set(entity_columns)
    for i, sel in enumerate(selections):
        for key in sel.view.entity.key_names:
            if key not in entity_columns:
                raise InvalidInputError(
                    f"the entity rows have no '{key}' column, a join key of feature view "
                    f"'{sel.view.name}'"
                )
        view_ctes, join = _view_ctes(sel, i, ts, bounds)
        ctes += view_ctes
        joins.append(join)
        for feature in sel.features:
            name = f"{sel.view.name}__{feature}" if full_feature_names else feature
            if name in seen:
                raise InvalidInputError(
                    f"output column '{name}' would appear twice; pass full_feature_names=True "
                    "to name features 'view__feature'"
                )
            seen.add(name)
            outputs.append(f"w{i}.{quote(feature)} AS {quote(name)}")
    selected = ", ".join(["e.* EXCLUDE (" + quote(_ROW) + ")", *outputs])
    return (
        f"WITH {', '.join(ctes)} SELECT {selected} FROM __entities e "
        f"{' '.join(joins)} ORDER BY e.{quote(_ROW)}"
    )


def get_historical(
    defs: Definitions,
    entity_rows: Any,
    features: FeatureService | str | Sequence[str],
    *,
    timestamp_field: str = "event_timestamp",
    assume_utc: bool = False,
    full_feature_names: bool = False,
    output: Output = "pandas",
    path: str | Path | None = None,
    temp_directory: Path | None = None,
) -> Any:
    """The point-in-time join (see the module docstring); ``path`` writes Parquet instead."""
    selections = resolve(defs, features)
    table = _entity_table(entity_rows, timestamp_field, assume_utc)
    entity_columns = [c for c in table.column_names if c != _ROW]
    low, high = pc.min_max(table[timestamp_field]).values()
    bounds = None if not low.is_valid else (low.as_py(), high.as_py())
    sql = build_query(selections, entity_columns, timestamp_field, full_feature_names, bounds)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if temp_directory is not None:
            temp_directory.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {literal(str(temp_directory))}")
        con.register("__entities", table)
        try:
            if path is not None:
                with atomic_path(path) as tmp:  # a failed join leaves no half a training set
                    con.execute(f"COPY ({sql}) TO {literal(str(tmp))} (FORMAT parquet)")
                return Path(path)
            relation = con.sql(sql)
            if output == "arrow":
                # DuckDB 2 names it to_arrow_table; 1.x calls it arrow.
                fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
                return fetch()
            if output == "polars":
                return relation.pl()
            if output == "pandas":
                return relation.df()
        except duckdb.Error as exc:
            raise InvalidInputError(
                f"the historical join failed: {str(exc).splitlines()[0]}; check that the "
                "entity key columns have the dtypes the entities declare"
            ) from None
        raise InvalidInputError(f"output {output!r} is not one of pandas, arrow, polars")
    finally:
        con.close()
