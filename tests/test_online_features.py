"""Materialization and online reads, on both online stores (SQLite and a real Redis).

The central property: after ``materialize(end=T)``, ``get_online`` at T gives for every
key exactly what ``get_historical`` gives at T.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelyard
from modelyard.errors import InvalidInputError
from modelyard.features import Entity, FeatureService, FeatureView, FrameSource

BASE = datetime(2024, 1, 1, tzinfo=UTC)
DRIVER = Entity("driver", {"driver_id": "int64", "region": "string"})


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


def make_workspace(folder: Path, online_url: str) -> modelyard.Workspace:
    # Redis is shared between tests, so every test names its views uniquely.
    return modelyard.Workspace.init(folder, online_url=online_url)


def feature_frame(rows: list[tuple[int, str, int, int | None, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": pd.array([r[0] for r in rows], dtype="int64"),
            "region": [r[1] for r in rows],
            "event_timestamp": pd.to_datetime([at(r[2]) for r in rows], utc=True),
            "created": pd.to_datetime([None if r[3] is None else at(r[3]) for r in rows], utc=True),
            "rating": pd.array([r[4] for r in rows], dtype="Float64"),
        }
    )


def same(a: Any, b: Any) -> bool:
    nulls = (
        a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NA,
        b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA,
    )
    return all(nulls) if any(nulls) else a == b


ROWS = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(["eu", "us"]),
        st.integers(0, 40),
        st.one_of(st.none(), st.integers(0, 50)),
        st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=ROWS, end=st.integers(0, 45), ttl=st.one_of(st.none(), st.integers(1, 30)))
def test_online_after_materialize_equals_historical_at_end(
    online_url: str, rows: list[Any], end: int, ttl: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp) / "ws", online_url)
        name = f"stats_{uuid.uuid4().hex[:10]}"  # Redis is shared between examples
        view = FeatureView(
            name,
            entity=DRIVER,
            source=FrameSource(feature_frame(rows), created_timestamp_field="created"),
            features={"rating": "float64"},
            ttl=None if ttl is None else timedelta(minutes=ttl),
        )
        ws.features.apply([DRIVER, view])
        try:
            ws.features.materialize(BASE - timedelta(days=1), at(end))
            keys = [(d, r) for d in range(5) for r in ("eu", "us")]
            entities = pd.DataFrame(
                {
                    "driver_id": [k[0] for k in keys],
                    "region": [k[1] for k in keys],
                    "event_timestamp": pd.to_datetime([at(end)] * len(keys), utc=True),
                }
            )
            offline = ws.features.get_historical(entities, [f"{name}:rating"])
            online = ws.features.get_online(
                [f"{name}:rating"],
                {"driver_id": [k[0] for k in keys], "region": [k[1] for k in keys]},
                at=at(end),
            )
            for i in range(len(keys)):
                assert same(online.values["rating"][i], offline["rating"].iloc[i]), keys[i]
        finally:
            ws.online.drop(f"{name}__v1")
            ws.close()


@pytest.fixture
def served(tmp_path: Path, online_url: str) -> Any:
    ws = make_workspace(tmp_path / "ws", online_url)
    name = f"stats_{uuid.uuid4().hex[:10]}"
    rows = [
        (1, "eu", 0, None, 1.0),
        (1, "eu", 10, None, 2.0),
        (2, "us", 5, None, 3.0),
        (1, "eu", 30, None, 4.0),
    ]
    view = FeatureView(
        name,
        entity=DRIVER,
        source=FrameSource(feature_frame(rows), created_timestamp_field="created"),
        features={"rating": "float64"},
        ttl=timedelta(minutes=20),
    )
    ws.features.apply([DRIVER, view, FeatureService("svc", [view])])
    yield ws, name
    ws.online.drop(f"{name}__v1")
    ws.close()


def test_status_present_missing_and_expired(served: Any) -> None:
    ws, _ = served
    ws.features.materialize(BASE - timedelta(days=1), at(12))
    keys = {"driver_id": [1, 2, 3], "region": ["eu", "us", "eu"]}
    got = ws.features.get_online("svc", keys, at=at(12))
    assert got.values["rating"] == [2.0, 3.0, None]
    assert got.status["rating"] == ["present", "present", "missing"]
    assert got.event_times["rating"][:2] == [at(10), at(5)]
    later = ws.features.get_online("svc", keys, at=at(26))  # driver 2's row is 21 min old
    assert later.status["rating"] == ["present", "expired", "missing"]
    assert later.values["rating"] == [2.0, None, None]
    assert later.to_dicts() == [{"rating": 2.0}, {"rating": None}, {"rating": None}]


def test_incremental_materialization_moves_the_watermark(served: Any) -> None:
    ws, name = served
    first = ws.features.materialize_incremental(at(12))
    assert [r.rows for r in first if r.view == name] == [2]
    again = ws.features.materialize_incremental(at(12))
    assert [r.rows for r in again if r.view == name] == [0]  # nothing new: idempotent
    later = ws.features.materialize_incremental(at(35))
    assert [r.rows for r in later if r.view == name] == [1]
    reader = ws.features.online_reader("svc")
    assert reader.read({"driver_id": [1], "region": ["eu"]}, at=at(35)).values["rating"] == [4.0]


def test_materializing_an_older_range_never_rolls_a_value_back(served: Any) -> None:
    ws, _ = served
    ws.features.materialize(BASE - timedelta(days=1), at(35))
    ws.features.materialize(BASE - timedelta(days=1), at(12))
    got = ws.features.get_online("svc", [{"driver_id": 1, "region": "eu"}], at=at(35))
    assert got.values["rating"] == [4.0]


def test_bad_input(served: Any) -> None:
    ws, _ = served
    with pytest.raises(InvalidInputError, match="no time zone"):
        ws.features.materialize(datetime(2024, 1, 1), at(10))
    with pytest.raises(InvalidInputError, match="must be before end"):
        ws.features.materialize(at(10), at(5))
    with pytest.raises(InvalidInputError, match="no 'region' value"):
        ws.features.get_online("svc", {"driver_id": [1]})


def test_offline_only_views_are_not_materialized(tmp_path: Path) -> None:
    ws = modelyard.Workspace.init(tmp_path / "ws")
    view = FeatureView(
        "offline_only",
        entity=DRIVER,
        source=FrameSource(feature_frame([(1, "eu", 0, None, 1.0)])),
        features={"rating": "float64"},
        online=False,
    )
    ws.features.apply([DRIVER, view])
    assert ws.features.materialize(BASE - timedelta(days=1), at(5)) == []
    with pytest.raises(InvalidInputError, match="offline only"):
        ws.features.materialize(BASE - timedelta(days=1), at(5), views=["offline_only"])


def test_every_key_form_reads_the_same_rows(served: Any) -> None:
    ws, _ = served
    ws.features.materialize(BASE - timedelta(days=1), at(12))
    forms: list[Any] = [
        {"driver_id": [1, 2], "region": ["eu", "us"]},
        [{"driver_id": 1, "region": "eu"}, {"driver_id": 2, "region": "us"}],
        pd.DataFrame({"driver_id": [1, 2], "region": ["eu", "us"]}),
        {"driver_id": (1, 2), "region": ("eu", "us")},
    ]
    for keys in forms:
        assert ws.features.get_online("svc", keys, at=at(12)).values["rating"] == [2.0, 3.0]
    one = ws.features.get_online("svc", {"driver_id": 1, "region": "eu"}, at=at(12))
    assert one.values["rating"] == [2.0]
    # An int key given as an integral float (pandas' int column with a gap) is the int.
    gap = pd.DataFrame({"driver_id": [1.0, None], "region": ["eu", "us"]})
    assert ws.features.get_online("svc", gap, at=at(12)).status["rating"] == [
        "present",
        "missing",
    ]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"driver_id": ["1"], "region": ["eu"]},
            "entity key 'driver_id' (of feature view '{name}') is int64, got '1' (str) in row 0",
        ),
        (
            [{"driver_id": 1, "region": "eu"}, {"driver_id": 1.5, "region": "eu"}],
            "entity key 'driver_id' (of feature view '{name}') is int64, got 1.5 (float) in row 1",
        ),
        (
            {"driver_id": [True], "region": ["eu"]},
            "entity key 'driver_id' (of feature view '{name}') is int64, got True (bool)",
        ),
        (
            {"driver_id": [1], "region": [7]},
            "entity key 'region' (of feature view '{name}') is string, got 7 (int) in row 0",
        ),
        (
            {"driver_id": [2**63], "region": ["eu"]},
            "entity key 'driver_id' (of feature view '{name}') is int64, got "
            "9223372036854775808 in row 0, which does not fit in 64 bits",
        ),
        ({"driver_id": [1, 2], "region": ["eu"]}, "key columns differ in length"),
        ({"driver_id": [1, 2], "region": "eu"}, "mix lists and single values"),
    ],
    ids=[
        "str-for-int",
        "fraction-for-int",
        "bool-for-int",
        "int-for-str",
        "beyond-int64",
        "ragged",
        "mixed",
    ],
)
def test_keys_of_the_wrong_type_are_refused_not_missing(
    served: Any, keys: Any, message: str
) -> None:
    ws, name = served
    ws.features.materialize(BASE - timedelta(days=1), at(12))
    with pytest.raises(InvalidInputError) as info:
        ws.features.get_online("svc", keys, at=at(12))
    assert message.format(name=name) in str(info.value)


def test_a_new_online_store_gets_every_row_not_only_those_after_the_old_watermark(
    tmp_path: Path, online_url: str
) -> None:
    name = f"stats_{uuid.uuid4().hex[:10]}"
    rows = [(1, "eu", 0, None, 1.0), (2, "us", 5, None, 3.0), (3, "eu", 20, None, 5.0)]
    rows.append((1, "eu", 30, None, 4.0))
    view = FeatureView(
        name,
        entity=DRIVER,
        source=FrameSource(feature_frame(rows)),
        features={"rating": "float64"},
    )
    keys = {"driver_id": [1, 2, 3], "region": ["eu", "us", "eu"]}
    store_a = f"sqlite:///{tmp_path / 'a.db'}"
    ws = make_workspace(tmp_path / "ws", store_a)
    ws.features.apply([DRIVER, view])
    [first] = ws.features.materialize_incremental(at(12))
    assert (first.rows, first.first) == (2, True)
    ws.close()

    ws = modelyard.Workspace(tmp_path / "ws", online_url=online_url)  # online.url switched
    try:
        [into_b] = ws.features.materialize_incremental(at(35))
        assert into_b.first and into_b.rows == 3  # all keys, not only rows after at(12)
        got = ws.features.get_online([f"{name}:rating"], keys, at=at(35))
        assert got.values["rating"] == [4.0, 3.0, 5.0]
        assert ws.features.watermarks(name) == {name: at(35)}
        [again] = ws.features.materialize_incremental(at(35))
        assert (again.rows, again.first) == (0, False)
    finally:
        ws.online.drop(f"{name}__v1")
        ws.close()
    ws = modelyard.Workspace(tmp_path / "ws", online_url=store_a)  # A's watermark is its own
    try:
        assert ws.features.watermarks(name) == {name: at(12)}
    finally:
        ws.close()
