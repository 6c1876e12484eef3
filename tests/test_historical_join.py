"""The point-in-time join, checked against a brute-force reference and by name.

The reference (``reference_join``) is written from the semantics, not from the SQL:
for each entity row and each view, the latest feature row with the same keys whose
event time is <= the row's time and > that time minus the view's ttl; ties on event
time go to the latest created time (a NULL created time loses), then to the row written
last (file name, then row number in the file); no match gives nulls.

Timestamps sit on a grid of whole minutes, so ties and ttl boundaries happen often.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelyard
from modelyard.features import Entity, FeatureView, FileSource, FrameSource

T0 = pd.Timestamp("2024-01-01", tz="UTC")
TS = "event_timestamp"
CREATED = "created"
MICROSECOND = timedelta(microseconds=1)

DRIVER = Entity("driver", {"driver_id": "int64", "region": "string"})
CAR = Entity("car", {"driver_id": "int64"})

ENTITY_COLUMNS = ["label", "driver_id", TS, "note", "region"]  # extras around the keys
ARROW_TYPES = {
    "driver_id": pa.int64(),
    "region": pa.string(),
    TS: pa.timestamp("us", tz="UTC"),
    CREATED: pa.timestamp("us", tz="UTC"),
    "label": pa.int64(),
    "note": pa.string(),
}


def at(minute: int, microseconds: int = 0) -> pd.Timestamp:
    return T0 + timedelta(minutes=minute, microseconds=microseconds)


# -- the reference ---------------------------------------------------------------------


@dataclass
class RefView:
    """A feature view as the reference sees it: its rows as dicts, in write order."""

    name: str
    keys: tuple[str, ...]
    ttl: timedelta | None
    created: str | None
    rows: list[dict[str, Any]]


def _matches(feature_row: dict[str, Any], entity_row: dict[str, Any], view: RefView) -> bool:
    if any(feature_row[key] != entity_row[key] for key in view.keys):
        return False
    event, when = feature_row[TS], entity_row[TS]
    if event > when:
        return False
    return view.ttl is None or event > when - view.ttl


def _beats(later: dict[str, Any], earlier: dict[str, Any], view: RefView) -> bool:
    """Whether ``later`` (written after ``earlier``) is the row to keep."""
    if later[TS] != earlier[TS]:
        return bool(later[TS] > earlier[TS])
    if view.created is not None:
        new, old = later[view.created], earlier[view.created]
        if new != old:
            if new is None:
                return False
            if old is None:
                return True
            return bool(new > old)
    return True  # a full tie: the last written wins


def reference_join(
    entity_rows: list[dict[str, Any]],
    selections: Sequence[tuple[RefView, Sequence[str]]],
    *,
    full_feature_names: bool,
) -> list[dict[str, Any]]:
    out = []
    for entity_row in entity_rows:
        row = dict(entity_row)
        for view, features in selections:
            best: dict[str, Any] | None = None
            for candidate in view.rows:
                if _matches(candidate, entity_row, view) and (
                    best is None or _beats(candidate, best, view)
                ):
                    best = candidate
            for feature in features:
                name = f"{view.name}__{feature}" if full_feature_names else feature
                row[name] = None if best is None else best[feature]
        out.append(row)
    return out


# -- comparing results -----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """One comparable form: every null is None, floats by their bits, times as Timestamps."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, pd.Timestamp):
        value = value.item()  # a numpy scalar
    if isinstance(value, float):
        return None if math.isnan(value) else ("float", value.hex())
    if isinstance(value, datetime):
        return pd.Timestamp(value)
    return value


def records(result: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and rows of a pandas, Arrow or polars result (or a Parquet path)."""
    if isinstance(result, Path):
        result = pq.read_table(result)
    if isinstance(result, pd.DataFrame):
        columns, rows = list(result.columns), result.to_dict("records")
    elif isinstance(result, pl.DataFrame):
        columns, rows = result.columns, result.to_dicts()
    else:
        columns, rows = result.column_names, result.to_pylist()
    return columns, [{k: _plain(v) for k, v in row.items()} for row in rows]


def assert_same(result: Any, expected: list[dict[str, Any]], columns: list[str]) -> None:
    got_columns, got = records(result)
    assert got_columns == columns
    want = [{k: _plain(row[k]) for k in columns} for row in expected]
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"row {i}"


# -- building inputs -------------------------------------------------------------------


def _table(rows: list[dict[str, Any]], types: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({name: pa.array([r[name] for r in rows], typ) for name, typ in types.items()})


def as_frame(table: pa.Table, kind: str) -> Any:
    if kind == "arrow":
        return table
    if kind == "polars":
        return pl.from_arrow(table)
    # nullable ints stay ints; float nulls become NaN, which pandas treats as null
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _feature_types(view: RefView, index: int) -> dict[str, pa.DataType]:
    types = {key: ARROW_TYPES[key] for key in view.keys}
    types[TS] = ARROW_TYPES[TS]
    if view.created:
        types[CREATED] = ARROW_TYPES[CREATED]
    types.update({f"x{index}": pa.float64(), f"n{index}": pa.int64(), f"s{index}": pa.string()})
    return types


FEATURE_DTYPES = {"x": "float64", "n": "int64", "s": "string"}


@dataclass
class Scenario:
    views: list[RefView]
    storage: list[tuple[str, dict[str, list[dict[str, Any]]]]]  # kind, {file name: rows}
    entity_rows: list[dict[str, Any]]
    refs: list[str]
    selections: list[tuple[RefView, list[str]]]
    full_feature_names: bool
    time_zone: str  # "UTC", "naive" (sent with assume_utc=True) or another zone
    entity_kind: str
    output: str


IDS = st.sampled_from([1, 2, 2**62 + 1])
REGIONS = st.sampled_from(["a", "b", "é"])
TEXT = st.none() | st.text(st.characters(codec="utf-8"), max_size=3)
FILE_NAMES = ["a", "a-b", "B", "part-1", "part-10", "part-9"]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # a few (driver_id, region) pairs per scenario, so that rows share keys and tie
    pairs = draw(st.lists(st.tuples(IDS, REGIONS), min_size=1, max_size=3, unique=True))
    pair = st.sampled_from(pairs) | st.tuples(IDS, REGIONS)
    views: list[RefView] = []
    storage = []
    for i in range(draw(st.integers(1, 3))):
        keys = draw(st.sampled_from([("driver_id", "region"), ("driver_id",)]))
        ttl = draw(st.sampled_from([None, 1, 2, 3, 5]))
        created = draw(st.sampled_from([None, CREATED]))
        row = st.builds(
            lambda key, rest: {"driver_id": key[0], "region": key[1], **rest},
            pair,
            st.fixed_dictionaries(
                {
                    TS: st.integers(0, 5).map(at),
                    CREATED: st.none() | st.integers(0, 2).map(at),
                    f"x{i}": st.none() | st.floats(allow_nan=False),
                    f"n{i}": st.none() | st.integers(-(2**63), 2**63 - 1),
                    f"s{i}": TEXT,
                }
            ),
        )
        rows = draw(st.lists(row, max_size=12))
        kind = draw(st.sampled_from(["pandas", "arrow", "polars", "folder"]))
        if kind == "folder":
            names = draw(st.lists(st.sampled_from(FILE_NAMES), min_size=1, max_size=3, unique=True))
            where = [draw(st.sampled_from(names)) for _ in rows]
            files = {n: [r for r, w in zip(rows, where, strict=True) if w == n] for n in names}
            # write order: by file name (with its extension), then row in the file
            rows = [r for n in sorted(files, key=lambda n: n + ".parquet") for r in files[n]]
        else:
            files = {"": rows}
        if created is None:
            rows = [{k: v for k, v in r.items() if k != CREATED} for r in rows]
        minutes = None if ttl is None else timedelta(minutes=ttl)
        views.append(RefView(f"v{i}", keys, minutes, created, rows))
        storage.append((kind, files))

    # entity times: the grid, plus event times and their ttl boundaries (and 1 us either side)
    near = {
        r[TS] + shift + delta
        for v in views
        for r in v.rows
        for shift in ([timedelta(0)] if v.ttl is None else [timedelta(0), v.ttl])
        for delta in (timedelta(0), -MICROSECOND, MICROSECOND)
    }
    times = st.integers(-2, 10).map(at)
    if near:
        times = times | st.sampled_from(sorted(near))
    entity_row = st.builds(
        lambda key, rest: {
            "label": rest["label"],
            "driver_id": key[0],
            TS: rest[TS],
            "note": rest["note"],
            "region": key[1],
        },
        pair,
        st.fixed_dictionaries({"label": st.none() | st.integers(-5, 5), TS: times, "note": TEXT}),
    )
    entity_rows = draw(st.lists(entity_row, max_size=8))
    if entity_rows:
        copies = draw(st.lists(st.sampled_from(entity_rows), max_size=3))
        entity_rows = draw(st.permutations(entity_rows + copies))

    chosen = draw(st.permutations(views))[: draw(st.integers(1, len(views)))]
    refs: list[str] = []
    selections = []
    for view in chosen:
        i = view.name[1:]
        names = [f"x{i}", f"n{i}", f"s{i}"]
        if draw(st.booleans()):
            refs.append(f"{view.name}:*")
            selections.append((view, names))
        else:
            picked = draw(st.permutations(names))[: draw(st.integers(1, 3))]
            refs.extend(f"{view.name}:{n}" for n in picked)
            selections.append((view, picked))
    return Scenario(
        views=views,
        storage=storage,
        entity_rows=entity_rows,
        refs=refs,
        selections=selections,
        full_feature_names=draw(st.booleans()),
        time_zone=draw(st.sampled_from(["UTC", "naive", "Asia/Kolkata"])),
        entity_kind=draw(st.sampled_from(["pandas", "arrow", "polars"])),
        output=draw(st.sampled_from(["pandas", "arrow", "polars", "parquet"])),
    )


def _entity_frame(scenario: Scenario) -> Any:
    types = {c: ARROW_TYPES[c] for c in ENTITY_COLUMNS}
    table = _table(scenario.entity_rows, types)
    if scenario.time_zone != "UTC":
        column = table[TS]
        if scenario.time_zone == "naive":
            column = column.cast(pa.timestamp("us"))
        else:
            column = column.cast(pa.timestamp("us", tz=scenario.time_zone))
        table = table.set_column(table.column_names.index(TS), TS, column)
    return as_frame(table, scenario.entity_kind)


def run_scenario(scenario: Scenario, root: Path) -> Any:
    ws = modelyard.Workspace.init(root / "ws")
    try:
        objects: list[Any] = [DRIVER, CAR]
        for i, (view, (kind, files)) in enumerate(
            zip(scenario.views, scenario.storage, strict=True)
        ):
            types = _feature_types(view, i)
            if kind == "folder":
                folder = root / "sources" / view.name
                folder.mkdir(parents=True)
                for name, rows in files.items():
                    pq.write_table(_table(rows, types), folder / f"{name}.parquet")
                source: Any = FileSource(str(folder), created_timestamp_field=view.created)
            else:
                frame = as_frame(_table(view.rows, types), kind)
                source = FrameSource(frame, created_timestamp_field=view.created)
            objects.append(
                FeatureView(
                    view.name,
                    entity=DRIVER if len(view.keys) == 2 else CAR,
                    source=source,
                    features={f"{p}{i}": dtype for p, dtype in FEATURE_DTYPES.items()},
                    ttl=view.ttl,
                )
            )
        ws.features.apply(objects)
        options: dict[str, Any] = {
            "full_feature_names": scenario.full_feature_names,
            "assume_utc": scenario.time_zone == "naive",
        }
        if scenario.output == "parquet":
            options["path"] = root / "out.parquet"
        else:
            options["output"] = scenario.output
        return ws.features.get_historical(_entity_frame(scenario), scenario.refs, **options)
    finally:
        ws.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_get_historical_matches_the_reference(scenario: Scenario) -> None:
    expected = reference_join(
        scenario.entity_rows, scenario.selections, full_feature_names=scenario.full_feature_names
    )
    columns = list(ENTITY_COLUMNS)
    for view, features in scenario.selections:
        columns += [f"{view.name}__{f}" if scenario.full_feature_names else f for f in features]
    with tempfile.TemporaryDirectory() as tmp:
        result = run_scenario(scenario, Path(tmp))
        assert_same(result, expected, columns)
