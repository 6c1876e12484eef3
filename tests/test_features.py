"""Feature definitions (plan, apply, versions) and the historical join's API and errors.

The join's semantics are checked against a brute-force reference in
tests/test_historical_join.py; this file covers what surrounds it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import modelyard
from modelyard.errors import InvalidInputError, ModelyardError, NotFoundError
from modelyard.features import (
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    FrameSource,
    SqlSource,
)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


DRIVER = Entity("driver", {"driver_id": "int64"})
STATS = pd.DataFrame(
    {
        "driver_id": [1, 1, 2],
        "event_timestamp": [ts("2024-01-01"), ts("2024-01-03"), ts("2024-01-02")],
        "rating": [4.0, 4.5, 3.0],
        "trips": [10, 11, 5],
    }
)
ENTITIES = pd.DataFrame(
    {
        "driver_id": [2, 1, 1],
        "event_timestamp": [ts("2024-01-03"), ts("2024-01-02"), ts("2024-01-04")],
        "label": [1, 0, 1],
    }
)


def stats_view(**overrides: object) -> FeatureView:
    options: dict[str, object] = {
        "entity": DRIVER,
        "source": FrameSource(STATS),
        "features": {"rating": "float64", "trips": "int64"},
        "ttl": timedelta(days=2),
    }
    options.update(overrides)
    return FeatureView("driver_stats", **options)  # type: ignore[arg-type]


def test_plan_writes_nothing_and_apply_creates_version_one(
    workspace: modelyard.Workspace,
) -> None:
    objects = [DRIVER, stats_view(), FeatureService("model_v1", ["driver_stats:rating"])]
    planned = workspace.features.plan(objects)
    assert [(c.kind, c.name, c.action, c.version) for c in planned] == [
        ("entity", "driver", "create", 1),
        ("view", "driver_stats", "create", 1),
        ("service", "model_v1", "create", 1),
    ]
    assert workspace.features.list() == []
    assert not (workspace.features.offline_root / "sources").exists()
    assert [c.action for c in workspace.features.apply(objects)] == ["create"] * 3
    assert [c.action for c in workspace.features.apply(objects)] == ["unchanged"] * 3
    assert workspace.features.list() == [
        ("entity", "driver", 1),
        ("service", "model_v1", 1),
        ("view", "driver_stats", 1),
    ]


def test_a_changed_schema_gets_a_new_version_and_the_old_stays_readable(
    workspace: modelyard.Workspace,
) -> None:
    workspace.features.apply([DRIVER, stats_view()])
    changes = workspace.features.apply([stats_view(features={"rating": "float64"})])
    assert (changes[0].action, changes[0].version, changes[0].changed) == (
        "update",
        2,
        ("features",),
    )
    assert workspace.features.view("driver_stats").feature_names == ["rating"]
    old = workspace.features.view("driver_stats", version=1)
    assert old.feature_names == ["rating", "trips"]
    assert old.ttl == timedelta(days=2)


def test_a_dataframe_source_is_stored_as_parquet_in_the_offline_store(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    sqlite_workspace.features.apply([DRIVER, stats_view()])
    source = sqlite_workspace.features.view("driver_stats").source
    assert isinstance(source, FileSource)
    path = Path(source.path)
    assert path.is_relative_to(sqlite_workspace.features.offline_root)
    assert pq.read_table(path).num_rows == len(STATS)


def test_historical_join_by_service_name_refs_and_service_object(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    service = FeatureService("model_v1", [stats_view()])
    sqlite_workspace.features.apply([DRIVER, stats_view(), service])
    expected = ENTITIES.assign(rating=[3.0, 4.0, 4.5], trips=[5, 10, 11])
    for features in ("model_v1", service, ["driver_stats:rating", "driver_stats:trips"]):
        got = sqlite_workspace.features.get_historical(ENTITIES, features)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_output_formats_and_parquet_agree(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    sqlite_workspace.features.apply([DRIVER, stats_view()])
    refs = ["driver_stats:*"]
    frame = sqlite_workspace.features.get_historical(ENTITIES, refs)
    arrow = sqlite_workspace.features.get_historical(ENTITIES, refs, output="arrow")
    polars = sqlite_workspace.features.get_historical(ENTITIES, refs, output="polars")
    written = sqlite_workspace.features.get_historical(ENTITIES, refs, path=tmp_path / "o.parquet")
    assert isinstance(arrow, pa.Table)
    assert arrow.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    for other in (arrow.to_pandas(), polars.to_pandas(), pq.read_table(written).to_pandas()):
        pd.testing.assert_frame_equal(other, frame, check_dtype=False)


def test_sql_and_parquet_folder_sources(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "stats"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(STATS.iloc[:2], preserve_index=False), folder / "a.parquet")
    pq.write_table(pa.Table.from_pandas(STATS.iloc[2:], preserve_index=False), folder / "b.parquet")
    from_folder = stats_view(source=FileSource(str(folder)))
    from_sql = FeatureView(
        "driver_sql",
        entity=DRIVER,
        source=SqlSource(
            f"SELECT * FROM read_parquet('{folder}/*.parquet') WHERE trips > 5",
            paths=(str(folder),),
        ),
        features={"trips": "int64"},
    )
    sqlite_workspace.features.apply([DRIVER, from_folder, from_sql])
    got = sqlite_workspace.features.get_historical(
        ENTITIES, ["driver_stats:rating", "driver_sql:trips"]
    )
    assert got["rating"].tolist() == [3.0, 4.0, 4.5]
    assert got["trips"].tolist()[1:] == [10, 11] and pd.isna(got["trips"].iloc[0])


def test_colliding_feature_names_need_full_feature_names(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    other = FeatureView(
        "driver_other",
        entity=DRIVER,
        source=FrameSource(STATS),
        features={"rating": "float64"},
    )
    sqlite_workspace.features.apply([DRIVER, stats_view(), other])
    refs = ["driver_stats:rating", "driver_other:rating"]
    with pytest.raises(InvalidInputError, match="full_feature_names=True"):
        sqlite_workspace.features.get_historical(ENTITIES, refs)
    got = sqlite_workspace.features.get_historical(ENTITIES, refs, full_feature_names=True)
    assert {"driver_stats__rating", "driver_other__rating"} <= set(got.columns)


@pytest.mark.parametrize(
    ("features", "error", "message"),
    [
        ("model_v2", NotFoundError, "did you mean 'model_v1'"),
        (["driver_stat:rating"], NotFoundError, "did you mean 'driver_stats'"),
        (["driver_stats:ratings"], InvalidInputError, "did you mean 'driver_stats:rating'"),
        (["driver_stats"], InvalidInputError, "'view:feature'"),
    ],
)
def test_unknown_names_suggest_the_nearest(
    sqlite_workspace: modelyard.Workspace,
    features: object,
    error: type[ModelyardError],
    message: str,
) -> None:
    sqlite_workspace.features.apply(
        [DRIVER, stats_view(), FeatureService("model_v1", ["driver_stats:rating"])]
    )
    with pytest.raises(error, match=message):
        sqlite_workspace.features.get_historical(ENTITIES, features)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("view", "message"),
    [
        (stats_view(features={"rating": "int64"}), "'rating': expected int64, found DOUBLE"),
        (stats_view(features={"ratin": "float64"}), "'ratin' is missing; found driver_id"),
        (
            stats_view(source=FrameSource(STATS.drop(columns="driver_id"))),
            "'driver_id' is missing",
        ),
        (
            stats_view(source=FrameSource(STATS.rename(columns={"event_timestamp": "t"}))),
            "'event_timestamp' (a timestamp) is missing",
        ),
        (
            stats_view(
                source=FrameSource(
                    STATS.assign(event_timestamp=STATS.event_timestamp.dt.tz_localize(None))
                )
            ),
            "without a time zone",
        ),
    ],
    ids=["dtype", "missing-feature", "missing-key", "missing-time", "naive-time"],
)
def test_a_source_that_differs_from_its_view_is_rejected_and_nothing_is_written(
    workspace: modelyard.Workspace, view: FeatureView, message: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        workspace.features.apply([DRIVER, view])
    assert message in str(info.value) and "feature view 'driver_stats'" in str(info.value)
    assert workspace.features.list() == []


def test_naive_entity_timestamps_are_rejected_unless_assume_utc(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    sqlite_workspace.features.apply([DRIVER, stats_view()])
    naive = ENTITIES.assign(event_timestamp=ENTITIES.event_timestamp.dt.tz_localize(None))
    with pytest.raises(InvalidInputError, match="without a time zone.*assume_utc=True"):
        sqlite_workspace.features.get_historical(naive, ["driver_stats:rating"])
    got = sqlite_workspace.features.get_historical(naive, ["driver_stats:rating"], assume_utc=True)
    assert got["rating"].tolist() == [3.0, 4.0, 4.5]


def test_missing_join_key_or_timestamp_column_in_the_entity_rows(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    sqlite_workspace.features.apply([DRIVER, stats_view()])
    with pytest.raises(InvalidInputError, match="no 'driver_id' column"):
        sqlite_workspace.features.get_historical(
            ENTITIES.drop(columns="driver_id"), ["driver_stats:rating"]
        )
    with pytest.raises(InvalidInputError, match="no 'event_timestamp' column"):
        sqlite_workspace.features.get_historical(
            ENTITIES.drop(columns="event_timestamp"), ["driver_stats:rating"]
        )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Entity("e", {}), "at least one join key"),
        (lambda: Entity("e", {"id": "integer"}), "dtype 'integer'"),
        (lambda: stats_view(features={}), "declares no features"),
        (lambda: stats_view(ttl=timedelta(0)), "ttl must be positive"),
        (lambda: stats_view(features={"driver_id": "int64"}), "are join keys"),
        (lambda: FeatureService("s", []), "selects no features"),
    ],
)
def test_definitions_check_their_own_shape(build: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build()  # type: ignore[operator]


def test_a_service_naming_an_unknown_feature_is_not_applied(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    with pytest.raises(InvalidInputError, match="did you mean 'driver_stats:rating'"):
        sqlite_workspace.features.apply(
            [DRIVER, stats_view(), FeatureService("s", ["driver_stats:ratng"])]
        )
    assert sqlite_workspace.features.list() == []


def test_entity_times_finer_than_a_microsecond_are_refused_with_a_remedy(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    sqlite_workspace.features.apply([DRIVER, stats_view()])
    rows = ENTITIES.assign(event_timestamp=ENTITIES.event_timestamp + pd.Timedelta(1, "ns"))
    with pytest.raises(InvalidInputError, match=r"finer than a microsecond.*floor\('us'\)"):
        sqlite_workspace.features.get_historical(rows, ["driver_stats:rating"])


def test_a_folder_source_skips_hidden_files_and_folders(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "stats"
    (folder / ".cache").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(STATS, preserve_index=False), folder / "part-0.parquet")
    # Later than the real rows: if a hidden file were read, its values would win.
    stale = STATS.assign(
        rating=[-1.0, -1.0, -1.0], event_timestamp=STATS.event_timestamp + pd.Timedelta(hours=1)
    )
    for hidden in (folder / ".cache" / "old.parquet", folder / ".part-1.parquet"):
        pq.write_table(pa.Table.from_pandas(stale, preserve_index=False), hidden)
    sqlite_workspace.features.apply([DRIVER, stats_view(source=FileSource(str(folder)))])
    got = sqlite_workspace.features.get_historical(ENTITIES, ["driver_stats:rating"])
    assert got["rating"].tolist() == [3.0, 4.0, 4.5]
