"""Push: rows checked against the view, then visible offline and online."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelyard
from modelyard.contracts import Field
from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.features import (
    Entity,
    FeatureView,
    FrameSource,
    NullRate,
    Range,
    RowCount,
    UniqueKeys,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DRIVER = Entity("driver", {"driver_id": "int64"})


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def pushed(tmp_path: Path, online_url: str) -> Iterator[tuple[modelyard.Workspace, str]]:
    ws = modelyard.Workspace.init(tmp_path / "ws", online_url=online_url)
    name = f"stats_{uuid.uuid4().hex[:10]}"
    source = pd.DataFrame(
        {
            "driver_id": [1, 2],
            "event_timestamp": pd.to_datetime([at(0), at(0)], utc=True),
            "rating": [1.0, 2.0],
        }
    )
    view = FeatureView(
        name,
        entity=DRIVER,
        source=FrameSource(source),
        features={"rating": "float64"},
        ttl=timedelta(hours=1),
    )
    ws.features.apply([DRIVER, view])
    yield ws, name
    ws.online.drop(f"{name}__v1")
    ws.close()


def entities(*rows: tuple[int, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": [r[0] for r in rows],
            "event_timestamp": pd.to_datetime([at(r[1]) for r in rows], utc=True),
        }
    )


def test_pushed_rows_are_visible_online_and_offline(pushed: Any) -> None:
    ws, name = pushed
    count = ws.features.push(name, [{"driver_id": 1, "event_timestamp": at(10), "rating": 9.5}])
    assert count == 1
    online = ws.features.get_online([f"{name}:rating"], {"driver_id": [1, 2]}, at=at(11))
    assert online.values["rating"] == [9.5, None]
    assert online.status["rating"] == ["present", "missing"]
    offline = ws.features.get_historical(entities((1, 5), (1, 10), (2, 10)), [f"{name}:*"])
    assert offline["rating"].tolist() == [1.0, 9.5, 2.0]


def test_a_pushed_row_wins_a_tie_with_the_source_and_later_pushes_win(pushed: Any) -> None:
    ws, name = pushed
    ws.features.push(
        name, pd.DataFrame({"driver_id": [2], "event_timestamp": [at(0)], "rating": [20.0]})
    )
    ws.features.push(
        name, pd.DataFrame({"driver_id": [2], "event_timestamp": [at(0)], "rating": [21.0]})
    )
    offline = ws.features.get_historical(entities((2, 1)), [f"{name}:rating"])
    assert offline["rating"].tolist() == [21.0]
    ws.features.materialize(T0 - timedelta(days=1), at(1))
    assert ws.features.get_online([f"{name}:rating"], {"driver_id": [2]}, at=at(1)).values[
        "rating"
    ] == [21.0]


def test_offline_only_push_leaves_the_online_store_alone(pushed: Any) -> None:
    ws, name = pushed
    ws.features.push(
        name, [{"driver_id": 3, "event_timestamp": at(5), "rating": 3.0}], to="offline"
    )
    assert ws.features.get_online([f"{name}:rating"], {"driver_id": [3]}, at=at(6)).status[
        "rating"
    ] == ["missing"]
    assert ws.features.get_historical(entities((3, 6)), [f"{name}:rating"])["rating"].tolist() == [
        3.0
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"event_timestamp": at(1), "rating": 1.0}], "row 1 has no value for join key"),
        ([{"driver_id": None, "event_timestamp": at(1), "rating": 1.0}], "no value for join key"),
        ([{"driver_id": 1, "event_timestamp": at(1), "rating": "high"}], "one type"),
        (
            [{"driver_id": 1, "event_timestamp": datetime(2024, 1, 1), "rating": 1.0}],
            "'event_timestamp' = 2024-01-01T00:00:00 has no time zone; pass an aware datetime",
        ),
        ([{"driver_id": 1, "rating": 1.0}], "row 1 has no value for event time"),
        ([], "non-empty"),
    ],
    ids=["missing-key", "null-key", "dtype", "naive-time", "missing-time", "empty"],
)
def test_bad_rows_are_rejected_and_nothing_is_written(
    pushed: Any, rows: list[dict[str, Any]], message: str
) -> None:
    ws, name = pushed
    good = {"driver_id": 7, "event_timestamp": at(1), "rating": 7.0}
    with pytest.raises(InvalidInputError) as info:
        ws.features.push(name, [good, *rows] if rows else rows)
    assert message in str(info.value)
    push_dir = ws.features.offline_root / "push" / name
    assert not push_dir.exists() or not any(push_dir.iterdir())
    assert ws.features.get_online([f"{name}:rating"], {"driver_id": [7]}, at=at(2)).status[
        "rating"
    ] == ["missing"]


def test_push_to_an_unknown_view_suggests_the_nearest(pushed: Any) -> None:
    ws, name = pushed
    with pytest.raises(NotFoundError, match=f"did you mean '{name}'"):
        ws.features.push(name[:-1], [{"driver_id": 1, "event_timestamp": at(1), "rating": 1.0}])


def test_a_table_missing_a_column_names_it(pushed: Any) -> None:
    ws, name = pushed
    rows = pd.DataFrame({"event_timestamp": pd.to_datetime([at(1)], utc=True), "rating": [1.0]})
    with pytest.raises(InvalidInputError, match="'driver_id' is missing"):
        ws.features.push(name, rows)
    rows = pd.DataFrame(
        {"driver_id": [1], "event_timestamp": pd.to_datetime([at(1)], utc=True), "rating": ["high"]}
    )
    with pytest.raises(InvalidInputError, match="'rating': expected float64, found VARCHAR"):
        ws.features.push(name, rows)


@pytest.fixture
def checked(tmp_path: Path, online_url: str) -> Iterator[tuple[modelyard.Workspace, str]]:
    """A view whose declared rules a push must keep: a Range check, a never-null check,
    unique keys, a declared category list, and partition-wide checks a push cannot judge."""
    ws = modelyard.Workspace.init(tmp_path / "ws", online_url=online_url)
    name = f"checked_{uuid.uuid4().hex[:10]}"
    source = pd.DataFrame(
        {
            "driver_id": [1],
            "event_timestamp": pd.to_datetime([at(0)], utc=True),
            "rating": [1.0],
            "tier": ["gold"],
        }
    )
    view = FeatureView(
        name,
        entity=DRIVER,
        source=FrameSource(source),
        features=[
            Field(name="rating", dtype="float64"),
            Field(name="tier", dtype="string", nullable=True, categories=("gold", "silver")),
        ],
        checks=[
            Range("rating", 0, 5),
            NullRate("rating", 0.0),
            UniqueKeys(),
            RowCount(min=1000),  # partition-wide: a push of a few rows is not judged by it
            NullRate("tier", 0.5),
        ],
    )
    ws.features.apply([DRIVER, view])
    yield ws, name
    ws.online.drop(f"{name}__v1")
    ws.close()


def nothing_written(ws: modelyard.Workspace, name: str, driver_id: int) -> bool:
    push_dir = ws.features.offline_root / "push" / name
    offline_empty = not push_dir.exists() or not any(push_dir.iterdir())
    online = ws.features.get_online([f"{name}:rating"], {"driver_id": [driver_id]}, at=at(2))
    return offline_empty and online.status["rating"] == ["missing"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"driver_id": 8, "event_timestamp": at(1), "rating": 42.0, "tier": "gold"},
            "refused by check range(rating): row 1 has rating = 42.0 "
            "(values must lie in [0, 5]; 1 bad row of 2)",
        ),
        (
            {"driver_id": 8, "event_timestamp": at(1), "rating": None, "tier": "gold"},
            "refused by check null_rate(rating): row 1 has rating = None",
        ),
        (
            # A NaN given in a row dict is a null, as pandas reads it: never served.
            {"driver_id": 8, "event_timestamp": at(1), "rating": float("nan"), "tier": "gold"},
            "refused by check null_rate(rating): row 1 has rating = None",
        ),
        (
            {"driver_id": 8, "event_timestamp": at(1), "rating": 1.0, "tier": "bronze"},
            "refused by check schema(tier.categories): row 1 has tier = 'bronze'",
        ),
        (
            {"driver_id": 7, "event_timestamp": at(1), "rating": 2.0, "tier": "gold"},
            "refused by check unique_keys: row 0 has driver_id = 7",
        ),
    ],
    ids=["range", "never-null", "nan", "category", "unique-keys"],
)
def test_a_push_breaking_a_declared_check_is_refused_whole(
    checked: Any, bad: dict[str, Any], message: str
) -> None:
    ws, name = checked
    good = {"driver_id": 7, "event_timestamp": at(1), "rating": 3.0, "tier": "gold"}
    with pytest.raises(InvalidInputError) as info:
        ws.features.push(name, [good, bad])
    text = str(info.value)
    assert f"push to feature view '{name}' {message}" in text
    assert "nothing was written" in text and "\n" not in text
    assert nothing_written(ws, name, 7)


def test_rows_that_keep_the_checks_are_pushed(checked: Any) -> None:
    ws, name = checked
    rows = [
        {"driver_id": 7, "event_timestamp": at(1), "rating": 5.0, "tier": None},
        {"driver_id": 8, "event_timestamp": at(1), "rating": 0.0, "tier": "silver"},
    ]
    assert ws.features.push(name, rows) == 2
    online = ws.features.get_online([f"{name}:rating", f"{name}:tier"], {"driver_id": [7, 8]})
    assert online.values == {"rating": [5.0, 0.0], "tier": [None, "silver"]}
    offline = ws.features.get_historical(entities((7, 2), (8, 2)), [f"{name}:rating"])
    assert offline["rating"].tolist() == [5.0, 0.0]


def test_a_push_whose_feature_values_are_all_null_is_accepted(pushed: Any) -> None:
    # A value that is not known now (null) is a legal feature value: the same row was
    # accepted beside a row with a value, but refused alone ("expected float64, found
    # NULL"), because the column's type came from the values alone.
    ws, name = pushed
    assert ws.features.push(name, [{"driver_id": 1, "event_timestamp": at(10), "rating": None}])
    frame = pd.DataFrame({"driver_id": [2], "event_timestamp": [at(10)], "rating": [None]})
    assert ws.features.push(name, frame)
    online = ws.features.get_online([f"{name}:rating"], {"driver_id": [1, 2]}, at=at(11))
    assert online.values["rating"] == [None, None]
    assert online.status["rating"] == ["present", "present"]
    offline = ws.features.get_historical(entities((1, 10), (2, 10), (1, 5)), [f"{name}:*"])
    assert offline["rating"].isna().tolist() == [True, True, False]


def test_a_push_to_an_online_store_that_is_down_writes_nothing_offline(tmp_path: Path) -> None:
    from modelyard.errors import BackendUnavailableError

    ws = modelyard.Workspace.init(tmp_path / "ws", online_url="redis://127.0.0.1:1/0")
    source = pd.DataFrame(
        {"driver_id": [1], "event_timestamp": pd.to_datetime([at(0)], utc=True), "rating": [1.0]}
    )
    view = FeatureView(
        "stats", entity=DRIVER, source=FrameSource(source), features={"rating": "float64"}
    )
    ws.features.apply([DRIVER, view])
    with pytest.raises(BackendUnavailableError):
        ws.features.push("stats", {"driver_id": 1, "event_timestamp": at(1), "rating": 2.0})
    folder = ws.features.offline_root / "push" / "stats"
    assert not folder.exists() or not any(folder.iterdir())
    ws.close()
