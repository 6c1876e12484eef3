"""The point-in-time join, checked against a brute-force reference and by name.

The reference (``reference_join``) is written from the semantics, not from the SQL:
for each entity row and each view, the latest feature row with the same keys whose
event time is <= the row's time and > that time minus the view's ttl; ties on event
time go to the latest created time (a NULL created time loses), then to the row written
last (file name, then row number in the file); no match gives nulls.

Event and created times sit on a grid of whole minutes and entity times on that grid or
at an event time (+ ttl) +/- 1 us, so ties and ttl boundaries happen often. Each example
varies the frame kind (pandas, Arrow, polars, a Parquet folder of several files), the time
unit (us, ns), the entity time zone (UTC, naive with assume_utc, another zone) and the
output (pandas, Arrow, polars, path=).
"""

from __future__ import annotations

import math
import re
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
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelyard
from modelyard.errors import InvalidInputError
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
    unit: str = "us"  # how the source stores its times: "us" or "ns" (pandas 2's default)


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
    types[TS] = pa.timestamp(view.unit, tz="UTC")
    if view.created:
        types[CREATED] = pa.timestamp(view.unit, tz="UTC")
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
    entity_unit: str  # "us" or "ns"
    entity_kind: str
    output: str


IDS = st.sampled_from([1, 2, 2**62 + 1])
REGIONS = st.sampled_from(["a", "b", "é"])
TEXT = st.none() | st.text(st.characters(codec="utf-8"), max_size=3)
FILE_NAMES = ["a", "a-b", "B", "part-1", "part-10", "part-9"]
# 1.001 s is not a whole number of microseconds as a float of seconds (see the regression
# test for it below); the others are whole minutes, so the grid hits their boundaries.
TTLS = [None, *(timedelta(minutes=m) for m in (1, 2, 3, 5)), timedelta(milliseconds=1001)]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # a few (driver_id, region) pairs per scenario, so that rows share keys and tie
    pairs = draw(st.lists(st.tuples(IDS, REGIONS), min_size=1, max_size=3, unique=True))
    pair = st.sampled_from(pairs) | st.tuples(IDS, REGIONS)
    views: list[RefView] = []
    storage = []
    for i in range(draw(st.integers(1, 3))):
        keys = draw(st.sampled_from([("driver_id", "region"), ("driver_id",)]))
        ttl = draw(st.sampled_from(TTLS))
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
        unit = draw(st.sampled_from(["us", "ns"]))
        views.append(RefView(f"v{i}", keys, ttl, created, rows, unit))
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
        entity_unit=draw(st.sampled_from(["us", "ns"])),
        entity_kind=draw(st.sampled_from(["pandas", "arrow", "polars"])),
        output=draw(st.sampled_from(["pandas", "arrow", "polars", "parquet"])),
    )


def _entity_frame(scenario: Scenario) -> Any:
    types = {c: ARROW_TYPES[c] for c in ENTITY_COLUMNS}
    table = _table(scenario.entity_rows, types)
    zone = None if scenario.time_zone == "naive" else scenario.time_zone
    column = table[TS].cast(pa.timestamp(scenario.entity_unit, tz=zone))
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


# -- the tricky cases, by name ---------------------------------------------------------


def frame(**columns: list[Any]) -> pd.DataFrame:
    """A pandas frame; int columns stay nullable ints, time columns are UTC-aware (us)."""
    out = {}
    for name, values in columns.items():
        if name in (TS, CREATED):
            out[name] = pd.Series(values, dtype="datetime64[us, UTC]")
        elif all(isinstance(v, int) or v is None for v in values):
            out[name] = pd.Series(values, dtype="Int64")
        else:
            out[name] = pd.Series(values)
    return pd.DataFrame(out)


def stats_view(
    data: pd.DataFrame, *, ttl: timedelta | None = None, name: str = "stats"
) -> FeatureView:
    features = {c: "float64" for c in data.columns if c not in (*DRIVER.key_names, TS, CREATED)}
    created = CREATED if CREATED in data.columns else None
    return FeatureView(
        name,
        entity=DRIVER,
        source=FrameSource(data, created_timestamp_field=created),
        features=features,
        ttl=ttl,
    )


def entities(*times: pd.Timestamp, driver_id: int = 1, region: str = "a") -> pd.DataFrame:
    n = len(times)
    return frame(driver_id=[driver_id] * n, region=[region] * n, **{TS: list(times)})


def values(result: pd.DataFrame, column: str) -> list[Any]:
    """One column's values, with every kind of null as None."""
    return [None if _plain(v) is None else v for v in result[column]]


def one_row(**columns: Any) -> dict[str, list[Any]]:
    return {k: [v] for k, v in columns.items()}


KEY = {"driver_id": 1, "region": "a"}


def test_tie_on_event_time_goes_to_the_latest_created_time(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    data = frame(
        driver_id=[1, 1, 1],
        region=["a", "a", "a"],
        **{TS: [at(0)] * 3, CREATED: [at(2), None, at(1)]},
        f=[1.0, 2.0, 3.0],
    )
    sqlite_workspace.features.apply([DRIVER, stats_view(data)])
    out = sqlite_workspace.features.get_historical(entities(at(0), at(5)), ["stats:f"])
    # created 00:02 beats 00:01; the NULL created time loses though it was written later
    assert values(out, "f") == [1.0, 1.0]


@pytest.mark.parametrize("created", [None, at(1)], ids=["no-created-field", "equal-created"])
def test_full_tie_goes_to_the_row_written_last(
    sqlite_workspace: modelyard.Workspace, created: pd.Timestamp | None
) -> None:
    columns: dict[str, list[Any]] = {
        "driver_id": [1, 1, 1],
        "region": ["a", "a", "a"],
        TS: [at(0)] * 3,
        "f": [3.0, 1.0, 2.0],
    }
    if created is not None:
        columns[CREATED] = [created] * 3
    sqlite_workspace.features.apply([DRIVER, stats_view(frame(**columns))])
    out = sqlite_workspace.features.get_historical(entities(at(0)), ["stats:f"])
    assert values(out, "f") == [2.0]


def test_ttl_boundary_is_exclusive(sqlite_workspace: modelyard.Workspace) -> None:
    data = frame(**one_row(**KEY, **{TS: at(0)}, f=1.0))
    sqlite_workspace.features.apply([DRIVER, stats_view(data, ttl=timedelta(minutes=3))])
    times = [at(0), at(3, -1), at(3), at(4)]
    out = sqlite_workspace.features.get_historical(entities(*times), ["stats:f"])
    # at the event time: in; 1 us before event + ttl: in; at event + ttl: out
    assert values(out, "f") == [1.0, 1.0, None, None]


def test_entity_row_before_any_feature_row_gets_nulls(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    data = frame(**one_row(**KEY, **{TS: at(5)}, f=1.0))
    sqlite_workspace.features.apply([DRIVER, stats_view(data)])
    out = sqlite_workspace.features.get_historical(entities(at(0), at(5, -1), at(5)), ["stats:f"])
    assert values(out, "f") == [None, None, 1.0]


def test_latest_row_with_a_null_value_gives_null_not_an_older_value(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    data = frame(driver_id=[1, 1], region=["a", "a"], **{TS: [at(0), at(1)]}, f=[1.0, None])
    sqlite_workspace.features.apply([DRIVER, stats_view(data)])
    out = sqlite_workspace.features.get_historical(entities(at(0), at(1)), ["stats:f"])
    assert values(out, "f") == [1.0, None]


def test_two_views_with_different_ttls_and_composite_keys(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    fast = frame(driver_id=[1, 1], region=["a", "b"], **{TS: [at(0), at(4)]}, speed=[1.0, 2.0])
    slow = frame(driver_id=[1, 1], region=["a", "b"], **{TS: [at(0), at(1)]}, rank=[10.0, 20.0])
    sqlite_workspace.features.apply(
        [
            DRIVER,
            stats_view(fast, ttl=timedelta(minutes=2), name="fast"),
            stats_view(slow, ttl=None, name="slow"),
        ]
    )
    rows = frame(
        driver_id=[1, 1, 1, 2],
        region=["a", "a", "b", "a"],
        **{TS: [at(1), at(2), at(5), at(5)]},
    )
    out = sqlite_workspace.features.get_historical(rows, ["fast:speed", "slow:rank"])
    assert values(out, "speed") == [1.0, None, 2.0, None]
    assert values(out, "rank") == [10.0, 10.0, 20.0, None]


def test_entity_rows_keep_their_order_duplicates_and_columns(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    data = frame(driver_id=[1, 2], region=["a", "a"], **{TS: [at(0), at(0)]}, f=[1.0, 2.0])
    sqlite_workspace.features.apply([DRIVER, stats_view(data)])
    rows = frame(
        label=[7, None, 7, 8],
        driver_id=[2, 1, 2, 1],
        **{TS: [at(1), at(1), at(1), at(-1)]},
        region=["a", "a", "a", "a"],
        note=["x", "y", "x", None],
    )
    out = sqlite_workspace.features.get_historical(rows, ["stats:f"])
    assert list(out.columns) == ["label", "driver_id", TS, "region", "note", "f"]
    assert records(out)[1] == records(rows.assign(f=[2.0, 1.0, 2.0, None]))[1]


def test_naive_entity_timestamps_are_rejected_unless_assume_utc(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    data = frame(**one_row(**KEY, **{TS: at(0)}, f=1.0))
    sqlite_workspace.features.apply([DRIVER, stats_view(data)])
    naive = entities(at(1)).assign(**{TS: lambda d: d[TS].dt.tz_localize(None)})
    message = (
        "entity column 'event_timestamp' has timestamps without a time zone; make them "
        "UTC-aware (pandas: .dt.tz_localize('UTC')) or pass assume_utc=True "
        "(--assume-utc on the command line)"
    )
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$"):
        sqlite_workspace.features.get_historical(naive, ["stats:f"])
    out = sqlite_workspace.features.get_historical(naive, ["stats:f"], assume_utc=True)
    assert values(out, "f") == [1.0]
    assert list(out[TS]) == [at(1)]
    assert str(out[TS].dt.tz) == "UTC"


def test_arrow_polars_and_parquet_outputs_match_pandas(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    data = frame(
        driver_id=[1, 1, 2],
        region=["a", "a", "b"],
        **{TS: [at(0), at(2), at(1)]},
        f=[1.5, None, -0.0],
        g=[0.1, 0.2, 0.3],
    )
    sqlite_workspace.features.apply([DRIVER, stats_view(data, ttl=timedelta(minutes=2))])
    rows = frame(
        driver_id=[1, 2, 1, 9],
        region=["a", "b", "a", "a"],
        **{TS: [at(1), at(2), at(3), at(3)]},
        label=[1, 2, None, 4],
    )
    features = ["stats:f", "stats:g"]
    store = sqlite_workspace.features
    columns, got = records(store.get_historical(rows, features))
    assert columns == ["driver_id", "region", TS, "label", "f", "g"]
    assert [(r["f"], r["g"]) for r in got] == [
        (_plain(1.5), _plain(0.1)),
        (_plain(-0.0), _plain(0.3)),
        (None, _plain(0.2)),
        (None, None),
    ]
    assert records(store.get_historical(rows, features, output="arrow")) == (columns, got)
    assert records(store.get_historical(rows, features, output="polars")) == (columns, got)
    path = store.get_historical(rows, features, path=tmp_path / "train.parquet")
    assert path == tmp_path / "train.parquet"
    assert records(path) == (columns, got)


def test_later_file_name_wins_a_full_tie_in_a_parquet_folder(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "stats"
    folder.mkdir()
    # b is written first; the later file name wins all the same (the order is by name)
    for name, value in [("b", 2.0), ("a", 1.0)]:
        data = frame(**one_row(**KEY, **{TS: at(0), CREATED: at(0)}, f=value))
        pq.write_table(pa.Table.from_pandas(data, preserve_index=False), folder / f"{name}.parquet")
    view = FeatureView(
        "stats",
        entity=DRIVER,
        source=FileSource(str(folder), created_timestamp_field=CREATED),
        features={"f": "float64"},
    )
    sqlite_workspace.features.apply([DRIVER, view])
    out = sqlite_workspace.features.get_historical(entities(at(0), at(1)), ["stats:f"])
    assert values(out, "f") == [2.0, 2.0]


# -- bugs the property test found (fixed in 7b289e9; kept as regression tests) ----------


def test_ttl_with_a_millisecond_fraction_keeps_its_last_microsecond(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    """int(ttl.total_seconds() * 1_000_000) once made 1.001 s into 1000999 us."""
    data = frame(**one_row(**KEY, **{TS: at(0)}, f=1.0))
    ttl = timedelta(milliseconds=1001)
    sqlite_workspace.features.apply([DRIVER, stats_view(data, ttl=ttl)])
    rows = entities(at(0) + ttl - MICROSECOND, at(0) + ttl)
    out = sqlite_workspace.features.get_historical(rows, ["stats:f"])
    assert values(out, "f") == [1.0, None]


def test_nanosecond_utc_timestamps_in_a_source_are_accepted(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    """datetime64[ns, UTC] (pandas 2's default) was rejected as 'found TIMESTAMPTZ_NS'."""
    data = frame(
        driver_id=[1, 1],
        region=["a", "a"],
        **{TS: [at(0), at(0)], CREATED: [at(1), at(0)]},
        f=[1.0, 2.0],
    )
    data[TS] = data[TS].astype("datetime64[ns, UTC]")
    data[CREATED] = data[CREATED].astype("datetime64[ns, UTC]")
    sqlite_workspace.features.apply([DRIVER, stats_view(data, ttl=timedelta(minutes=1))])
    out = sqlite_workspace.features.get_historical(entities(at(0), at(1, -1), at(1)), ["stats:f"])
    assert values(out, "f") == [1.0, 1.0, None]
