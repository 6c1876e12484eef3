"""A feature view whose source is a table or query on the real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest

import modelyard
from modelyard.errors import InvalidInputError
from modelyard.features import Entity, FeatureView, PostgresSource

DRIVER = Entity("driver", {"driver_id": "int64"})


@pytest.fixture
def pg_table(pg_url: str) -> str:
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ratings (driver_id bigint, event_timestamp timestamptz, "
            "rating double precision, note text)"
        )
        conn.execute(
            "INSERT INTO ratings VALUES (1, '2024-01-01T00:00:00Z', 4.0, 'a'), "
            "(1, '2024-01-02T00:00:00Z', 4.5, 'b'), (2, '2024-01-01T12:00:00Z', 3.0, 'c')"
        )
    return dsn


def entities() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": [1, 2, 1],
            "event_timestamp": pd.to_datetime(
                ["2024-01-01T06:00Z", "2024-01-03T00:00Z", "2024-01-03T12:00Z"]
            ),
        }
    )


@pytest.mark.parametrize("form", ["table", "query"])
def test_historical_join_and_materialize_from_postgres(
    tmp_path: Path, pg_table: str, form: str
) -> None:
    ws = modelyard.Workspace.init(tmp_path / "ws")
    source = (
        PostgresSource(pg_table, table="ratings")
        if form == "table"
        else PostgresSource(pg_table, query="SELECT * FROM ratings WHERE rating > 3.5")
    )
    view = FeatureView(
        "ratings",
        entity=DRIVER,
        source=source,
        features={"rating": "float64", "note": "string"},
        ttl=timedelta(days=2),
    )
    ws.features.apply([DRIVER, view])
    got = ws.features.get_historical(entities(), ["ratings:rating", "ratings:note"])
    if form == "table":
        assert got["rating"].tolist() == [4.0, 3.0, 4.5]
        assert got["note"].tolist() == ["a", "c", "b"]
    else:
        assert got["rating"].iloc[[0, 2]].tolist() == [4.0, 4.5] and pd.isna(got["rating"][1])
    ws.features.materialize(datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))
    online = ws.features.get_online(
        ["ratings:note"], {"driver_id": [1]}, at=datetime(2024, 1, 3, tzinfo=UTC)
    )
    assert online.values["note"] == ["b"]


def test_the_url_can_come_from_the_environment(
    tmp_path: Path, pg_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATINGS_DB", pg_table)
    ws = modelyard.Workspace.init(tmp_path / "ws")
    view = FeatureView(
        "ratings",
        entity=DRIVER,
        source=PostgresSource("env:RATINGS_DB", table="ratings"),
        features={"rating": "float64"},
    )
    ws.features.apply([DRIVER, view])
    assert ws.features.view("ratings").source.spec()["url"] == "env:RATINGS_DB"
    assert ws.features.get_historical(entities(), ["ratings:rating"])["rating"].tolist() == [
        4.0,
        3.0,
        4.5,
    ]


def test_postgres_source_errors(tmp_path: Path, pg_table: str) -> None:
    ws = modelyard.Workspace.init(tmp_path / "ws")
    with pytest.raises(InvalidInputError, match="exactly one of table= or query="):
        PostgresSource(pg_table)
    missing = FeatureView(
        "x", entity=DRIVER, source=PostgresSource(pg_table, table="nope"), features={"r": "float64"}
    )
    with pytest.raises(InvalidInputError, match="cannot read"):
        ws.features.apply([DRIVER, missing])
    wrong = FeatureView(
        "y",
        entity=DRIVER,
        source=PostgresSource(pg_table, table="ratings"),
        features={"note": "float64"},
    )
    with pytest.raises(InvalidInputError, match="'note': expected float64, found VARCHAR"):
        ws.features.apply([DRIVER, wrong])
