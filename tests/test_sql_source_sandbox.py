"""A stored SQL source reads only the paths its view declares: a query (or a stored
definition someone edited in the database) that reads any other file is refused with
one line naming the file and the remedy, and cannot switch the sandbox off."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

import modelyard
from modelyard.backends.metadata import tables as t
from modelyard.errors import InvalidInputError
from modelyard.features import Entity, FeatureView, SqlSource

DRIVER = Entity("driver", {"driver_id": "int64"})
SECRET = "hunter2-do-not-read"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    stats = tmp_path / "stats"
    stats.mkdir()
    table = pa.table(
        {
            "driver_id": [1, 2],
            "trips": [10, 11],
            "event_timestamp": pa.array([1_700_000_000_000_000] * 2, pa.timestamp("us", "UTC")),
        }
    )
    pq.write_table(table, stats / "a.parquet")
    (tmp_path / "credentials.csv").write_text(f"user,password\nbob,{SECRET}\n")
    return stats


def _view(query: str, paths: tuple[str, ...]) -> FeatureView:
    return FeatureView(
        "trips", entity=DRIVER, source=SqlSource(query, paths=paths), features={"trips": "int64"}
    )


def test_a_query_reads_its_declared_folder(
    sqlite_workspace: modelyard.Workspace, folder: Path
) -> None:
    view = _view(f"SELECT * FROM read_parquet('{folder}/*.parquet')", (str(folder),))
    sqlite_workspace.features.apply([DRIVER, view])
    snapshot = sqlite_workspace.features.view("trips").source.snapshot()  # type: ignore[attr-defined]
    assert pq.read_table(snapshot).column("trips").to_pylist() == [10, 11]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('{secret}')",
        "SELECT content AS trips FROM read_text('/etc/passwd')",
        "SELECT * FROM read_parquet('{folder}/../credentials.csv')",
        "SELECT * FROM glob('/*')",
    ],
)
def test_a_query_that_reads_anything_else_is_refused(
    sqlite_workspace: modelyard.Workspace, folder: Path, query: str
) -> None:
    secret = folder.parent / "credentials.csv"
    view = _view(query.format(secret=secret, folder=folder), (str(folder),))
    with pytest.raises(InvalidInputError) as caught:
        sqlite_workspace.features.apply([DRIVER, view])
    message = str(caught.value)
    assert "may read only the paths its view declares" in message and "\n" not in message
    assert SECRET not in message


def test_an_edited_stored_definition_is_sandboxed_too(
    sqlite_workspace: modelyard.Workspace, folder: Path
) -> None:
    ws = sqlite_workspace
    view = _view(f"SELECT * FROM read_parquet('{folder}/*.parquet')", (str(folder),))
    ws.features.apply([DRIVER, view])
    secret = folder.parent / "credentials.csv"
    d = t.feature_definitions
    with ws.metadata.write() as conn:  # someone with write access to the database
        row = conn.execute(d.select().where(d.c.name == "trips")).mappings().one()
        spec = dict(row["spec"])
        spec["source"] = {
            **spec["source"],
            "query": f"SELECT password AS trips, 1 AS driver_id FROM read_csv('{secret}')",
        }
        conn.execute(update(d).where(d.c.name == "trips").values(spec=spec))
    with pytest.raises(InvalidInputError, match="may read only the paths"):
        ws.features.view("trips").source.snapshot()  # type: ignore[attr-defined]


def test_the_query_cannot_turn_the_sandbox_off(folder: Path) -> None:
    import duckdb

    from modelyard.features._sandbox import sandboxed

    con = sandboxed([str(folder)])
    for statement in ("SET enable_external_access = true", "SET allowed_directories = ['/']"):
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute(statement)
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"SELECT * FROM read_csv('{folder.parent / 'credentials.csv'}')")
