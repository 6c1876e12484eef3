"""Backfill: partitions checked one by one; a rejected one writes nothing and is read from
nowhere, the others land, and a rerun after the fix completes the range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelyard
from modelyard.errors import InvalidInputError
from modelyard.features import (
    Entity,
    FeatureView,
    FileSource,
    Freshness,
    NullRate,
    Range,
    RowCount,
    UniqueKeys,
)

DAY0 = datetime(2024, 3, 1, tzinfo=UTC)
DRIVER = Entity("driver", {"driver_id": "int64"})


def day(n: int, hours: int = 0) -> datetime:
    return DAY0 + timedelta(days=n, hours=hours)


def write_source(path: Path, bad_day: int | None = None) -> None:
    rows = []
    for d in range(3):
        for driver in (1, 2):
            rating = 4.0 + d / 10 + driver / 100
            if d == bad_day and driver == 2:
                rating = 99.0  # outside the declared range
            rows.append((driver, day(d, 12), rating))
    pd.DataFrame(
        {
            "driver_id": [r[0] for r in rows],
            "event_timestamp": pd.to_datetime([r[1] for r in rows], utc=True),
            "rating": [r[2] for r in rows],
        }
    ).to_parquet(path)


def view(path: Path, *checks: Any) -> FeatureView:
    return FeatureView(
        "ratings",
        entity=DRIVER,
        source=FileSource(str(path)),
        features={"rating": "float64"},
        ttl=timedelta(days=2),
        checks=checks or (Range("rating", 0, 5), NullRate("rating", 0.0), UniqueKeys()),
    )


@pytest.fixture
def ws(sqlite_workspace: modelyard.Workspace, tmp_path: Path) -> Any:
    return sqlite_workspace, tmp_path / "ratings.parquet"


def lookups(ws: modelyard.Workspace) -> list[float]:
    entities = pd.DataFrame(
        {
            "driver_id": [1, 2, 1, 2],
            "event_timestamp": pd.to_datetime(
                [day(0, 13), day(0, 13), day(2, 13), day(2, 13)], utc=True
            ),
        }
    )
    return ws.features.get_historical(entities, ["ratings:rating"])["rating"].tolist()


def test_a_clean_backfill_writes_every_partition_and_reads_agree(ws: Any) -> None:
    workspace, path = ws
    write_source(path)
    workspace.features.apply([DRIVER, view(path)])
    before = lookups(workspace)
    report = workspace.features.backfill("ratings", day(0), day(3))
    assert report.ok
    assert [(p.status, p.rows) for p in report.partitions] == [("written", 2)] * 3
    assert lookups(workspace) == before == [4.01, 4.02, 4.21, 4.22]
    again = workspace.features.backfill("ratings", day(0), day(3))
    assert [p.status for p in again.partitions] == ["skipped"] * 3


def test_covered_times_are_read_from_the_backfill_not_the_source(ws: Any) -> None:
    workspace, path = ws
    write_source(path)
    workspace.features.apply([DRIVER, view(path)])
    workspace.features.backfill("ratings", day(0), day(1))  # day 0 only
    write_source(path, bad_day=0)  # the source changes after the backfill
    write_source(path, bad_day=2)
    got = lookups(workspace)
    assert got[:2] == [4.01, 4.02]  # day 0: the checked, backfilled rows
    assert got[3] == 99.0  # day 2: not covered, so read from the source


def test_a_rejected_partition_writes_nothing_the_others_land_and_a_rerun_completes(
    ws: Any,
) -> None:
    workspace, path = ws
    write_source(path, bad_day=1)
    workspace.features.apply([DRIVER, view(path)])
    report = workspace.features.backfill("ratings", day(0), day(3))
    assert [p.status for p in report.partitions] == ["written", "rejected", "written"]
    assert not report.ok and report.rejected == [report.failed]
    failed = report.failed
    assert failed is not None and failed.start == day(1)
    assert failed.failure is not None and failed.failure.check == "range(rating)"
    assert failed.failure.samples[0]["rating"] == 99.0
    folder = workspace.features.offline_root / "backfill" / "ratings" / "v1"
    assert len(list(folder.glob("*.parquet"))) == 2
    # The rejected day is read from nowhere: no training set sees its bad rows.
    rows = pd.DataFrame(
        {"driver_id": [2], "event_timestamp": pd.to_datetime([day(1, 13)], utc=True)}
    )
    seen = workspace.features.get_historical(rows, ["ratings:rating"])["rating"].tolist()
    assert seen == [4.02]  # day 0's value, still within the ttl; never 99.0
    status = workspace.features.backfill_status("ratings")
    assert status["rejected"] == [(day(1), day(2))]
    write_source(path)  # the data is fixed upstream
    rerun = workspace.features.backfill("ratings", day(0), day(3))
    assert [p.status for p in rerun.partitions] == ["skipped", "written", "skipped"]
    assert rerun.ok
    assert len(list(folder.glob("*.parquet"))) == 3
    assert workspace.features.backfill_status("ratings")["rejected"] == []
    seen = workspace.features.get_historical(rows, ["ratings:rating"])["rating"].tolist()
    assert seen == [pytest.approx(4.12)]


def test_a_partition_reports_every_check_it_fails(ws: Any) -> None:
    workspace, path = ws
    frame = pd.DataFrame(
        {
            "driver_id": [1, 1, 2],
            "event_timestamp": pd.to_datetime([day(0, 1), day(0, 1), day(0, 2)], utc=True),
            "rating": [4.0, 4.5, None],
        }
    )
    frame.loc[0, "rating"] = 7.0
    frame.to_parquet(path)
    workspace.features.apply([DRIVER, view(path)])
    report = workspace.features.backfill("ratings", day(0), day(1))
    [rejected] = report.rejected
    assert [f.check for f in rejected.failures] == [
        "range(rating)",
        "null_rate(rating)",
        "unique_keys",
    ]
    last = workspace.features.backfill_status("ratings")["last_run"]
    [part] = last["partitions"]
    assert [f["check"] for f in part["failures"]] == [f.check for f in rejected.failures]
    assert part["failures"][0]["samples"][0]["rating"] == 7.0


@pytest.mark.parametrize(
    ("check", "name", "with_samples"),
    [
        (NullRate("rating", 0.0), "null_rate(rating)", True),
        (UniqueKeys(), "unique_keys", True),
        (RowCount(min=3), "row_count", False),
        (Freshness(timedelta(hours=6)), "freshness", False),
    ],
)
def test_each_check_reports_its_failure(ws: Any, check: Any, name: str, with_samples: bool) -> None:
    workspace, path = ws
    frame = pd.DataFrame(
        {
            "driver_id": [1, 1],
            "event_timestamp": pd.to_datetime([day(0, 1), day(0, 1)], utc=True),
            "rating": [None, 4.0],
        }
    )
    frame.to_parquet(path)
    workspace.features.apply([DRIVER, view(path, check)])
    report = workspace.features.backfill("ratings", day(0), day(1))
    assert report.failed is not None and report.failed.failure is not None
    assert report.failed.failure.check == name
    assert bool(report.failed.failure.samples) is with_samples


def test_checks_are_stored_with_the_view(ws: Any) -> None:
    workspace, path = ws
    write_source(path)
    checks = (
        Range("rating", 0, 5),
        NullRate("rating", 0.1),
        UniqueKeys(),
        RowCount(1, 10),
        Freshness(timedelta(hours=12)),
    )
    workspace.features.apply([DRIVER, view(path, *checks)])
    assert workspace.features.view("ratings").checks == checks


def test_bad_backfill_input(ws: Any) -> None:
    workspace, path = ws
    write_source(path)
    workspace.features.apply([DRIVER, view(path)])
    with pytest.raises(InvalidInputError, match="time zone"):
        workspace.features.backfill("ratings", datetime(2024, 3, 1), day(1))
    with pytest.raises(InvalidInputError, match="must be before end"):
        workspace.features.backfill("ratings", day(2), day(1))
    with pytest.raises(InvalidInputError, match="did you mean 'ratings:rating'"):
        view(path, Range("ratng", 0, 1))
    # Covering days that have not happened would hide the rows that arrive for them.
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(InvalidInputError, match="is in the future; backfill only what has"):
        workspace.features.backfill("ratings", day(0), later)
    with pytest.raises(InvalidInputError, match="more than 10000; give a shorter range"):
        workspace.features.backfill("ratings", datetime(1900, 1, 1, tzinfo=UTC), day(0))


@pytest.mark.slow
def test_a_backfill_on_ray_publishes_what_a_local_one_does(ws: Any, ray_executor: Any) -> None:
    workspace, path = ws
    write_source(path, bad_day=1)
    workspace.features.apply([DRIVER, view(path)])

    with modelyard.Workspace(workspace.root, executor_url="ray") as on_ray:
        report = on_ray.features.backfill("ratings", day(0), day(3))

    assert [p.status for p in report.partitions] == ["written", "rejected", "written"]
    assert report.failed is not None and report.failed.failure is not None
    assert report.failed.failure.samples[0]["rating"] == 99.0
    folder = workspace.features.offline_root / "backfill" / "ratings" / "v1"
    # The rejected partition's file was never staged; no staged file is left behind.
    assert sorted(p.name for p in folder.iterdir()) == [
        "20240301T000000-20240302T000000.parquet",
        "20240303T000000-20240304T000000.parquet",
        "coverage.json",
        "last_run.json",  # the run's per-partition results (FeatureStore.backfill_status)
    ]
    last = workspace.features.backfill_status("ratings")["last_run"]
    assert [p["status"] for p in last["partitions"]] == ["written", "rejected", "written"]
    assert last["partitions"][1]["check"] == report.failed.failure.check
