"""Point-in-time correct training sets: for each entity row, the latest feature row of
each view with the same keys, event time <= the row's time and > that time minus ttl.

Runs as one DuckDB query: per view, feature rows that tie on (keys, event time) are first
reduced to the winner (latest created time, then last written), then an ASOF LEFT JOIN
picks the latest row at or before each entity row's time, and the ttl is applied to the
row it picked (an older row is older still, so nothing else could qualify). Entity rows
keep their order and their own columns. DuckDB spills to disk, so inputs larger than
memory work; ``path=`` streams the result into Parquet without holding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

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
                "make them UTC-aware (pandas: .dt.tz_localize('UTC')) or pass assume_utc=True"
            )
        col = pc.assume_timezone(col, "UTC")
    col = col.cast(pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.column_names.index(timestamp_field), timestamp_field, col)
    return table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))


def _view_sql(sel: _Selection, alias: str, ts: str) -> str:
    view = sel.view
    src = view.source
    keys = [quote(k) for k in view.entity.key_names]
    created = quote(src.created_timestamp_field) if src.created_timestamp_field else "NULL"
    columns = ", ".join([*keys, *(quote(f) for f in sel.features)])
    window = ""
    if view.ttl is not None:
        window = (
            f" AND {quote(src.timestamp_field)} > "
            f"(SELECT min({ts}) FROM __entities) - INTERVAL {_us(view)} MICROSECONDS"
        )
    return (
        f"{alias} AS (SELECT {columns}, {quote(src.timestamp_field)} AS __ts "
        f"FROM ({view_rows_sql(view, sel.offline_root, sel.version)}) "
        f"WHERE {quote(src.timestamp_field)} <= (SELECT max({ts}) FROM __entities){window} "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)}, {quote(src.timestamp_field)} "
        f"ORDER BY {created} DESC NULLS LAST, __tier DESC, __file DESC, __pos DESC) = 1)"
    )


def _us(view: FeatureView) -> int:
    assert view.ttl is not None
    return int(view.ttl.total_seconds() * 1_000_000)


def build_query(
    selections: list[_Selection],
    entity_columns: list[str],
    timestamp_field: str,
    full_feature_names: bool,
) -> str:
    ts = quote(timestamp_field)
    ctes: list[str] = []
    joins: list[str] = []
    outputs: list[str] = []
    seen = set(entity_columns)
    for i, sel in enumerate(selections):
        alias = f"v{i}"
        ctes.append(_view_sql(sel, alias, ts))
        for key in sel.view.entity.key_names:
            if key not in entity_columns:
                raise InvalidInputError(
                    f"the entity rows have no '{key}' column, a join key of feature view "
                    f"'{sel.view.name}'"
                )
        on = " AND ".join(
            [f"e.{quote(k)} = {alias}.{quote(k)}" for k in sel.view.entity.key_names]
            + [f"e.{ts} >= {alias}.__ts"]
        )
        joins.append(f"ASOF LEFT JOIN {alias} ON {on}")
        fresh = (
            "TRUE"
            if sel.view.ttl is None
            else (f"{alias}.__ts > e.{ts} - INTERVAL {_us(sel.view)} MICROSECONDS")
        )
        for feature in sel.features:
            name = f"{sel.view.name}__{feature}" if full_feature_names else feature
            if name in seen:
                raise InvalidInputError(
                    f"output column '{name}' would appear twice; pass full_feature_names=True "
                    "to name features 'view__feature'"
                )
            seen.add(name)
            outputs.append(f"CASE WHEN {fresh} THEN {alias}.{quote(feature)} END AS {quote(name)}")
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
    sql = build_query(selections, entity_columns, timestamp_field, full_feature_names)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if temp_directory is not None:
            temp_directory.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {literal(str(temp_directory))}")
        con.register("__entities", table)
        try:
            if path is not None:
                con.execute(f"COPY ({sql}) TO {literal(str(path))} (FORMAT parquet)")
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
