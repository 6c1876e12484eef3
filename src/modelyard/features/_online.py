"""Materialization (offline -> online) and online reads of feature services.

Keys and values are encoded once with orjson (keys: the JSON list of join-key values;
values: the JSON list of the view's features in declared order), so an online read is
one store call per view plus one decode per row. Online tables are named by view *and
version*, so a changed schema never mixes rows of two layouts.

``materialize`` writes, per key, the latest row with event time in (start, end] and
within the ttl at ``end`` (ties: latest created, then last written, as offline). The
store keeps whichever row is newer, so a rerun or an overlapping range is harmless; the
watermark moves only after a view is fully written, so an interrupted run is resumed
by running it again. The watermark is kept in the online store itself (see
``WATERMARKS``), so it always describes the store that is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from modelyard import _time
from modelyard.errors import InvalidInputError, OnlineStoreMissingError
from modelyard.features._definitions import FeatureView
from modelyard.features._keys import checked_key_columns, key_columns
from modelyard.features._push import view_rows_sql
from modelyard.features._sources import literal, quote

if TYPE_CHECKING:
    from modelyard.backends.online import OnlineStore
    from modelyard.features._historical import _Selection
    from modelyard.features._registry import Definitions

BATCH_ROWS = 50_000
_OPT = orjson.OPT_SERIALIZE_NUMPY


def online_table(view: str, version: int) -> str:
    return f"{view}__v{version}"


def encode_key(values: Sequence[Any]) -> bytes:
    return orjson.dumps(list(values), option=_OPT)


@dataclass
class MaterializeResult:
    view: str
    version: int
    rows: int
    start: datetime
    end: datetime
    first: bool = False
    """True when the online store had no watermark for the view (a new or emptied store,
    or a new view version), so ``materialize_incremental`` wrote every row in range."""


def materialize_view(
    view: FeatureView,
    version: int,
    store: OnlineStore,
    start: datetime,
    end: datetime,
    progress: Callable[[int], None] | None = None,
    offline_root: Path | None = None,
) -> int:
    """Write the latest in-ttl row per key with event time in (start, end]; return rows."""
    src = view.source
    time_col = quote(src.timestamp_field)
    keys = [quote(k) for k in view.entity.key_names]
    created = quote(src.created_timestamp_field) if src.created_timestamp_field else "NULL"
    lower = start
    if view.ttl is not None:
        lower = max(start, end - view.ttl)
    sql = (
        f"SELECT {', '.join(keys)}, {', '.join(quote(f) for f in view.feature_names)}, "
        f"epoch_us({time_col}) AS __ts FROM ({view_rows_sql(view, offline_root, version)}) "
        f"WHERE {time_col} > TIMESTAMPTZ {literal(lower.isoformat())} "
        f"AND {time_col} <= TIMESTAMPTZ {literal(end.isoformat())} "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY {time_col} DESC, "
        f"{created} DESC NULLS LAST, __tier DESC, __file DESC, __pos DESC) = 1"
    )
    n_keys = len(keys)
    table = online_table(view.name, version)
    written = 0
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        relation = con.sql(sql)
        # DuckDB 2 names it to_arrow_reader; 1.x calls it fetch_record_batch.
        stream = getattr(relation, "to_arrow_reader", None) or relation.fetch_record_batch
        reader = stream(BATCH_ROWS)
        for batch in reader:
            columns = [col.to_pylist() for col in batch.columns]
            rows = encode_rows(columns[:n_keys], columns[-1], columns[n_keys:-1])
            store.write(table, rows)
            written += len(rows)
            if progress is not None:
                progress(len(rows))
    finally:
        con.close()
    return written


def encode_rows(
    key_cols: list[list[Any]], ts_col: list[int], feat_cols: list[list[Any]]
) -> list[tuple[bytes, int, bytes]]:
    """Columns of keys, event times (µs) and features -> online rows."""
    return [
        (
            orjson.dumps([c[i] for c in key_cols], option=_OPT),
            ts_col[i],
            orjson.dumps([c[i] for c in feat_cols], option=_OPT),
        )
        for i in range(len(ts_col))
    ]


def write_table(store: OnlineStore, view: FeatureView, version: int, table: pa.Table) -> None:
    """Write already checked rows (keys, event time, features) to the online store."""
    times = table[view.source.timestamp_field].cast(pa.timestamp("us", tz="UTC"))
    rows = encode_rows(
        [table[k].to_pylist() for k in view.entity.key_names],
        pc.cast(times, pa.int64()).to_pylist(),
        [table[f].to_pylist() for f in view.feature_names],
    )
    store.write(online_table(view.name, version), rows)


@dataclass
class OnlineFeatures:
    """Per requested feature: a value, its event time and a status for every entity row.

    Status is ``present``, ``missing`` (no row for the key) or ``expired`` (the row is
    older than the view's ttl; its value is reported as None).
    """

    names: list[str]
    values: dict[str, list[Any]] = field(default_factory=dict)
    event_times: dict[str, list[datetime | None]] = field(default_factory=dict)
    status: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def to_dicts(self) -> list[dict[str, Any]]:
        return [{n: self.values[n][i] for n in self.names} for i in range(len(self))]


def read_online(
    store: OnlineStore,
    selections: list[_Selection],
    versions: dict[str, int],
    entity_rows: Any,
    *,
    at: datetime,
    full_feature_names: bool,
) -> OnlineFeatures:
    columns = key_columns(entity_rows)
    now_us = _time.to_us(at, "at")
    result = OnlineFeatures(names=[])
    for sel in selections:
        view = sel.view
        key_cols = checked_key_columns(view.entity.join_keys, columns, view.name)
        keys = [orjson.dumps(list(vals), option=_OPT) for vals in zip(*key_cols, strict=True)]
        found = store.read(online_table(view.name, versions[view.name]), keys)
        positions = [view.feature_names.index(f) for f in sel.features]
        ttl_us = None if view.ttl is None else view.ttl // timedelta(microseconds=1)
        per_feature: list[list[Any]] = [[] for _ in positions]
        times: list[datetime | None] = []
        states: list[str] = []
        for hit in found:
            if hit is None:
                times.append(None)
                states.append("missing")
                for column in per_feature:
                    column.append(None)
                continue
            ts, payload = hit
            times.append(_time.to_datetime(ts))
            if ttl_us is not None and now_us - ts >= ttl_us:
                states.append("expired")
                for column in per_feature:
                    column.append(None)
                continue
            states.append("present")
            decoded = orjson.loads(payload)
            for column, pos in zip(per_feature, positions, strict=True):
                column.append(decoded[pos])
        for feature, column in zip(sel.features, per_feature, strict=True):
            name = f"{view.name}__{feature}" if full_feature_names else feature
            if name in result.values:
                raise InvalidInputError(
                    f"feature '{name}' is requested from two views; pass full_feature_names=True"
                )
            result.names.append(name)
            result.values[name] = column
            result.event_times[name] = times
            result.status[name] = states
    return result


# Watermarks live in the online store they describe, as rows of a table of their own (no
# view's table: those end in "__v<version>"), through the same write/read as features. So
# a new online URL, or a store that was emptied, has no watermark and gets a full
# materialization, where a watermark kept in the metadata would skip all older rows.
WATERMARKS = "__watermarks"


def watermark(store: OnlineStore, view: str, version: int) -> datetime | None:
    """How far ``store`` holds view ``view`` (version ``version``); None if never."""
    try:
        [found] = store.read(WATERMARKS, [encode_key([view, version])])
    except OnlineStoreMissingError:
        return None  # a store not yet written holds nothing; the first write creates it
    return None if found is None else _time.to_datetime(found[0])


def set_watermark(store: OnlineStore, view: str, version: int, end: datetime) -> None:
    """Move the watermark to ``end``; the store keeps the later one (like any row)."""
    updated = orjson.dumps({"updated_at": _time.now_us()})
    store.write(WATERMARKS, [(encode_key([view, version]), _time.to_us(end, "end"), updated)])


def online_views(defs: Definitions, views: Sequence[str] | None) -> list[tuple[FeatureView, int]]:
    names = list(views) if views is not None else [n for k, n, _ in defs.list() if k == "view"]
    chosen = [defs.versioned_view(n) for n in names]
    if views is None:
        chosen = [(v, n) for v, n in chosen if v.online]
    for view, _ in chosen:
        if not view.online:
            raise InvalidInputError(
                f"feature view '{view.name}' is offline only (online=False); it cannot be "
                "materialized"
            )
    return chosen
