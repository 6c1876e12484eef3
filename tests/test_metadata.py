"""Metadata back end contract, run against SQLite and a real PostgreSQL (``metadata_url``).

The multi-process tests start real OS processes (``sys.executable``, the venv's Python)
that write to one store at the same moment, as two training jobs or two replicas would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Table, func, select, text

import modelyard
from modelyard.backends.metadata import (
    SCHEMES,
    MetadataStore,
    _migrate,
    open_metadata,
    redact,
    tables,
)
from modelyard.errors import BackendUnavailableError, ConfigError

PASSWORD = "s3cr3t-Pa55word"


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    s = open_metadata(metadata_url)
    s.open()
    try:
        yield s
    finally:
        s.close()


def add_run(conn: Connection, run_id: str) -> None:
    conn.execute(
        tables.runs.insert(),
        {"run_id": run_id, "experiment": "e", "name": run_id, "status": "running", "start_time": 1},
    )


def count(store: MetadataStore, table: Table) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def revisions(store: MetadataStore) -> list[str]:
    with store.read() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


# -- migrations --------------------------------------------------------------------------


def test_head_is_the_head_of_the_migration_scripts() -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_migrate.MIGRATIONS))

    assert ScriptDirectory.from_config(cfg).get_heads() == [_migrate.HEAD]


def test_open_migrates_a_fresh_database_to_head(store: MetadataStore) -> None:
    assert revisions(store) == [_migrate.HEAD]


def test_migrated_schema_matches_the_table_definitions(store: MetadataStore) -> None:
    with store.read() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)

    assert diff == []


def test_reopening_is_idempotent_and_keeps_data(metadata_url: str) -> None:
    first = open_metadata(metadata_url)
    first.open()
    with first.write() as conn:
        add_run(conn, "r1")
    first.open()  # a second open on the same object is a no-op
    first.close()

    second = open_metadata(metadata_url)
    second.open()
    try:
        assert revisions(second) == [_migrate.HEAD]
        assert count(second, tables.runs) == 1
    finally:
        second.close()


def test_store_connects_on_first_use_without_open(metadata_url: str) -> None:
    s = open_metadata(metadata_url)
    try:
        with s.write() as conn:
            add_run(conn, "r1")
        assert count(s, tables.runs) == 1
    finally:
        s.close()


# -- transactions and upsert ------------------------------------------------------------


def test_write_that_raises_leaves_nothing_behind(store: MetadataStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with store.write() as conn:
            add_run(conn, "r1")
            conn.execute(tables.params.insert(), {"run_id": "r1", "key": "k", "value": "v"})
            raise RuntimeError("boom")

    assert count(store, tables.runs) == 0
    assert count(store, tables.params) == 0
    with store.write() as conn:  # the store is still usable
        add_run(conn, "r1")
    assert count(store, tables.runs) == 1


def test_failed_statement_rolls_back_the_whole_transaction(store: MetadataStore) -> None:
    with store.write() as conn:
        add_run(conn, "r1")

    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with store.write() as conn:
            add_run(conn, "r2")
            add_run(conn, "r1")  # primary key clash

    with store.read() as conn:
        assert [r[0] for r in conn.execute(select(tables.runs.c.run_id))] == ["r1"]


def test_upsert_inserts_new_keys_and_updates_existing_ones(store: MetadataStore) -> None:
    with store.write() as conn:
        add_run(conn, "r1")
        store.upsert(
            conn,
            tables.tags,
            [
                {"run_id": "r1", "key": "a", "value": "1"},
                {"run_id": "r1", "key": "b", "value": "2"},
            ],
            keys=("run_id", "key"),
            update=("value",),
        )
    with store.write() as conn:
        store.upsert(
            conn,
            tables.tags,
            [
                {"run_id": "r1", "key": "b", "value": "20"},
                {"run_id": "r1", "key": "c", "value": "3"},
            ],
            keys=("run_id", "key"),
            update=("value",),
        )
        store.upsert(conn, tables.tags, [], keys=("run_id", "key"), update=("value",))

    with store.read() as conn:
        rows = conn.execute(select(tables.tags.c.key, tables.tags.c.value)).all()
    assert sorted(tuple(r) for r in rows) == [("a", "1"), ("b", "20"), ("c", "3")]


def test_upsert_updates_only_the_listed_columns(store: MetadataStore) -> None:
    row = {
        "name": "m",
        "description": "first",
        "latest_version": 0,
        "created_at": 1,
        "updated_at": 1,
    }
    with store.write() as conn:
        store.upsert(conn, tables.registered_models, [row], keys=("name",), update=("updated_at",))
        store.upsert(
            conn,
            tables.registered_models,
            [{**row, "description": "second", "created_at": 9, "updated_at": 9}],
            keys=("name",),
            update=("updated_at",),
        )

    with store.read() as conn:
        got = conn.execute(select(tables.registered_models)).one()
    assert (got.description, got.created_at, got.updated_at) == ("first", 1, 9)


def _newer_step(table: Table, excluded: Any) -> Any:
    return excluded.step > table.c.step


def test_upsert_where_condition_decides_whether_a_conflict_updates(store: MetadataStore) -> None:
    def put(step: int, value: float) -> None:
        with store.write() as conn:
            store.upsert(
                conn,
                tables.latest_metrics,
                [{"run_id": "r1", "key": "loss", "value": value, "step": step, "timestamp": step}],
                keys=("run_id", "key"),
                update=("value", "step", "timestamp"),
                where=_newer_step,
            )

    with store.write() as conn:
        add_run(conn, "r1")
    put(5, 0.5)
    put(3, 0.9)  # older step: the condition is false, the row stays
    put(5, 0.7)  # same step: still not newer
    with store.read() as conn:
        assert tuple(
            conn.execute(select(tables.latest_metrics.c.step, tables.latest_metrics.c.value)).one()
        ) == (5, 0.5)
    put(8, 0.1)  # newer step wins
    with store.read() as conn:
        assert tuple(
            conn.execute(select(tables.latest_metrics.c.step, tables.latest_metrics.c.value)).one()
        ) == (8, 0.1)


def test_foreign_keys_are_enforced(store: MetadataStore) -> None:
    with pytest.raises(Exception, match="(?i)foreign key"):
        with store.write() as conn:
            conn.execute(tables.params.insert(), {"run_id": "nope", "key": "k", "value": "v"})
    assert count(store, tables.params) == 0


# -- URLs and errors ---------------------------------------------------------------------


@pytest.mark.parametrize("url", [f"mysql://bob:{PASSWORD}@db/meta", "meta.db", "sqlite//x.db"])
def test_unknown_scheme_lists_the_valid_ones_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_metadata(url)

    message = str(info.value)
    assert "unknown scheme" in message
    for scheme in SCHEMES:
        assert f"{scheme}://" in message
    assert PASSWORD not in message


def test_redact_hides_only_the_password() -> None:
    assert (
        redact(f"postgresql://bob:{PASSWORD}@db:5432/meta") == "postgresql://bob:***@db:5432/meta"
    )
    assert redact("postgresql://bob@db/meta") == "postgresql://bob@db/meta"
    assert redact("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    assert PASSWORD not in repr(open_metadata(f"postgresql://bob:{PASSWORD}@db/meta"))


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg", "postgres"])
def test_unreachable_postgres_is_backend_unavailable_without_the_password(scheme: str) -> None:
    s = open_metadata(f"{scheme}://bob:{PASSWORD}@127.0.0.1:1/meta")

    with pytest.raises(BackendUnavailableError) as info:
        s.open()

    exc = info.value
    assert isinstance(exc, ConnectionError)
    assert exc.status == 503
    message = str(exc)
    assert "\n" not in message
    assert "127.0.0.1" in message
    assert "metadata.url" in message  # the remedy names the setting
    assert PASSWORD not in message
    assert PASSWORD not in "".join(traceback.format_exception(exc))


def test_workspace_error_names_the_source_of_the_bad_url(tmp_path: Path) -> None:
    environ = {"MODELYARD_METADATA_URL": f"postgresql://bob:{PASSWORD}@127.0.0.1:1/meta"}
    ws = modelyard.Workspace(tmp_path, environ=environ)

    with pytest.raises(BackendUnavailableError) as info:
        ws.metadata  # noqa: B018 - opening the store is the action under test

    assert "(from metadata.url, env MODELYARD_METADATA_URL)" in str(info.value)
    assert PASSWORD not in str(info.value)


# -- several processes at once -------------------------------------------------------------

# Each worker imports what it needs, signals that it is ready, and waits for the shared
# "go" file, so that the writes (and the first open, which migrates) really coincide.
_PRELUDE = """
import json, sys, time
from pathlib import Path

def wait_for_go():
    go = Path(sys.argv[1])
    (go.parent / ("ready-" + sys.argv[2])).touch()
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
"""

_WRITER = _PRELUDE + textwrap.dedent(
    """
    import modelyard
    tag, root, url = sys.argv[2], sys.argv[3], sys.argv[4]
    n_runs, every = int(sys.argv[5]), int(sys.argv[6])

    def model(frame):
        return frame["x"] * 2

    runs, versions = [], []
    wait_for_go()
    # create=True: the first open, which creates and migrates the database, is the race.
    with modelyard.Workspace(root, create=True, metadata_url=url) as ws:
        for i in range(n_runs):
            params = {"worker": tag, "i": i}
            with ws.start_run(f"{tag}-{i}", params=params, experiment="race") as run:
                for step in range(3):
                    run.log_metrics({"loss": 1.0 / (step + 1), "i": float(i)}, step=step)
                if i % every == 0:
                    logged = ws.registry.log_model(run, model, input_example={"x": [1.0, 2.0]})
                    versions.append((run.run_id, ws.registry.register("shared", logged).version))
            runs.append(run.run_id)
    print(json.dumps({"runs": runs, "versions": versions}))
    """
)

_OPENER = _PRELUDE + textwrap.dedent(
    """
    import alembic.command, alembic.config, sqlalchemy.dialects.postgresql, psycopg
    from modelyard.backends.metadata import open_metadata, tables
    store = open_metadata(sys.argv[3])
    wait_for_go()
    store.open()
    with store.write() as conn:
        conn.execute(tables.runs.insert(), {"run_id": sys.argv[2], "experiment": "e",
                     "name": sys.argv[2], "status": "running", "start_time": 0})
    store.close()
    """
)


def run_together(script: str, tags: list[str], args: list[str], cwd: Path) -> list[str]:
    """Start one process per tag, release them at the same moment, return their stdout."""
    go = cwd / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go), tag, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in tags
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((cwd / f"ready-{tag}").exists() for tag in tags):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died before the start"
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for tag, p, (_, err) in zip(tags, procs, outputs, strict=True):
        assert p.returncode == 0, f"worker {tag} failed:\n{err}"
    return [out for out, _ in outputs]


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_and_corrupt_nothing(
    metadata_url: str, tmp_path: Path
) -> None:
    n_runs, every = 40, 5
    root = tmp_path / "ws"
    modelyard.Workspace.init(root)

    outputs = run_together(
        _WRITER, ["a", "b"], [str(root), metadata_url, str(n_runs), str(every)], tmp_path
    )

    reports = {tag: json.loads(out) for tag, out in zip("ab", outputs, strict=True)}
    with modelyard.Workspace(root, metadata_url=metadata_url) as ws:
        runs = ws.runs.search(experiment="race", max_results=10 * n_runs)
        by_worker = {tag: [r for r in runs if r.params["worker"] == tag] for tag in "ab"}
        for tag in "ab":
            assert sorted(r.run_id for r in by_worker[tag]) == sorted(reports[tag]["runs"])
            assert sorted(int(r.params["i"]) for r in by_worker[tag]) == list(range(n_runs))
        assert len(runs) == 2 * n_runs
        for r in runs:
            assert r.status == "finished"
            assert r.metrics == {"loss": pytest.approx(1 / 3), "i": float(r.params["i"])}
            assert [p.value for p in ws.runs.history(r.run_id, "loss")] == pytest.approx(
                [1.0, 1 / 2, 1 / 3]
            )

        # Versions are exactly 1..N, each registered once, by the run that logged it.
        versions = ws.registry.versions("shared")
        registered = 2 * len(range(0, n_runs, every))
        assert [v.version for v in versions] == list(range(1, registered + 1))
        reported = sorted((run_id, v) for rep in reports.values() for run_id, v in rep["versions"])
        assert sorted((v.run_id, v.version) for v in versions) == reported
        assert ws.registry.get("shared").version == registered
        assert {m.name: m.latest_version for m in ws.registry.list()} == {"shared": registered}
        assert ws.registry.load("shared").predict([{"x": 1.0}, {"x": 3.0}])["x"].tolist() == [
            2.0,
            6.0,
        ]

        # The two workers really overlapped in time (else this test proves nothing).
        spans = {
            tag: (min(r.start_time for r in rs), max(r.end_time or r.start_time for r in rs))
            for tag, rs in by_worker.items()
        }
        assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1]

        store = ws.metadata
        assert count(store, tables.metrics) == 2 * n_runs * 3 * 2
        assert count(store, tables.params) == 2 * n_runs * 2
        assert revisions(store) == [_migrate.HEAD]
        if store.dialect == "sqlite":
            with store.read() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


@pytest.mark.slow
def test_processes_opening_a_fresh_database_at_once_all_succeed(
    metadata_url: str, tmp_path: Path
) -> None:
    tags = ["p0", "p1", "p2"]

    run_together(_OPENER, tags, [metadata_url], tmp_path)

    s = open_metadata(metadata_url)
    try:
        assert revisions(s) == [_migrate.HEAD]
        with s.read() as conn:
            assert sorted(r[0] for r in conn.execute(select(tables.runs.c.run_id))) == tags
    finally:
        s.close()


def test_upgrading_to_0009_gives_each_experiment_of_existing_runs_an_id(
    metadata_url: str,
) -> None:
    """The team server numbers experiments; runs logged before it keep theirs by name."""
    from alembic import command

    first = open_metadata(metadata_url)
    first.open()
    with first.engine.connect() as conn:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_migrate.MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
        for n, (run_id, experiment) in enumerate(
            [("r1", "churn"), ("r2", "images"), ("r3", "churn")]
        ):
            conn.execute(
                text(
                    "INSERT INTO runs (run_id, experiment, name, status, start_time) "
                    "VALUES (:r, :e, :r, 'finished', :t)"
                ),
                {"r": run_id, "e": experiment, "t": 1_000 + n},
            )
        conn.commit()
    first.close()
    second = open_metadata(metadata_url)
    second.open()  # migrates to HEAD
    try:
        assert revisions(second) == [_migrate.HEAD]
        with second.read() as conn:
            found = (
                conn.execute(
                    select(tables.experiments.c.name).order_by(tables.experiments.c.experiment_id)
                )
                .scalars()
                .all()
            )
            assert found == ["churn", "images"]  # numbered by their first run
            assert conn.execute(select(tables.runs.c.deleted_at)).scalars().all() == [None] * 3
    finally:
        second.close()
