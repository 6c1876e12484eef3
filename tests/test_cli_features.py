"""``modelyard features …`` as a user runs it against a definitions file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cli_support import run_cli

DEFINITIONS = """
from datetime import timedelta
import pandas as pd
from modelyard.features import Entity, FeatureView, FeatureService, FrameSource

ts = lambda s: pd.Timestamp(s, tz="UTC")
driver = Entity("driver", {"driver_id": "int64"})
stats = FeatureView(
    "driver_stats",
    entity=driver,
    source=FrameSource(pd.DataFrame({
        "driver_id": [1, 2],
        "event_timestamp": [ts("2024-01-01"), ts("2024-01-02")],
        "rating": [4.0, 3.0],
    })),
    features={"rating": "float64"},
    ttl=timedelta(days=FEATURE_TTL_DAYS),
)
model_v1 = FeatureService("model_v1", [stats])
"""


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "p"
    assert run_cli(capsys, "init", str(folder))[0] == 0
    (folder / "features.py").write_text(DEFINITIONS.replace("FEATURE_TTL_DAYS", "7"))
    return folder


def test_plan_apply_list_show(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = ["-w", str(project)]
    code, out, _ = run_cli(capsys, "features", "plan", *w)
    assert code == 0 and out.count("create") == 3
    code, out, _ = run_cli(capsys, "features", "list", *w)
    assert code == 0 and "driver_stats" not in out  # plan wrote nothing
    assert run_cli(capsys, "features", "apply", *w)[0] == 0
    code, out, _ = run_cli(capsys, "features", "apply", *w)
    assert code == 0 and out.count("unchanged") == 3
    (project / "features.py").write_text(DEFINITIONS.replace("FEATURE_TTL_DAYS", "3"))
    code, out, _ = run_cli(capsys, "features", "apply", *w)
    assert code == 0 and "update" in out and "ttl_seconds" in out
    code, out, _ = run_cli(capsys, "features", "list", *w)
    assert "driver_stats" in out and "│ 2 " in out
    code, out, _ = run_cli(capsys, "features", "show", "driver_stats", "--version", "1", *w)
    assert code == 0 and '"ttl_seconds": 604800.0' in out


def test_get_historical_writes_a_training_set(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["-w", str(project)]
    run_cli(capsys, "features", "apply", *w)
    entities = pd.DataFrame(
        {
            "driver_id": [2, 1, 3],
            "event_timestamp": pd.to_datetime(["2024-01-03"] * 3, utc=True),
            "label": [1, 0, 1],
        }
    )
    entities.to_parquet(tmp_path / "entities.parquet")
    out_path = tmp_path / "train.parquet"
    code, out, err = run_cli(
        capsys,
        "features",
        "get-historical",
        "--entities",
        str(tmp_path / "entities.parquet"),
        "-f",
        "model_v1",
        "-o",
        str(out_path),
        *w,
    )
    assert code == 0, err
    assert "wrote 3 rows" in out
    got = pd.read_parquet(out_path)
    assert got["label"].tolist() == [1, 0, 1]
    assert got["rating"].tolist()[:2] == [3.0, 4.0] and pd.isna(got["rating"].iloc[2])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["features", "show", "driver_stat"], "did you mean 'driver_stats'"),
        (["features", "apply", "missing.py"], "does not exist"),
    ],
)
def test_errors_are_one_line_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    run_cli(capsys, "features", "apply", "-w", str(project))
    code, _, err = run_cli(capsys, *args, "-w", str(project))
    assert code == 2 and message in err and "Traceback" not in err


def test_a_broken_definitions_file_names_the_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "features.py").write_text("import nonexistent_module_xyz\n")
    code, _, err = run_cli(capsys, "features", "plan", "-w", str(project))
    assert code == 2 and "features.py" in err and "nonexistent_module_xyz" in err


def test_materialize_then_get_online(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    w = ["-w", str(project)]
    run_cli(capsys, "features", "apply", *w)
    code, out, err = run_cli(
        capsys,
        "features",
        "materialize",
        "--start",
        "2023-12-01T00:00:00Z",
        "--end",
        "2024-01-05T00:00:00Z",
        *w,
    )
    assert code == 0, err
    assert "driver_stats" in out and "│ 2 " in out
    code, out, err = run_cli(
        capsys, "features", "get-online", "-f", "model_v1", "-k", '[{"driver_id": 2}]', *w
    )
    assert code == 0, err
    [row] = json.loads(out)
    # The CLI reads at the current time, long after the 7-day ttl of 2024's rows.
    assert row["rating"] == {
        "value": None,
        "event_time": "2024-01-02T00:00:00+00:00",
        "status": "expired",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["features", "materialize", "--end", "2024-01-05T00:00"], "has no time zone"),
        (["features", "get-online", "-f", "model_v1", "-k", "{bad"], "not valid JSON"),
        (["features", "get-online", "-f", "model_v1", "-k", "[1]"], "list of objects"),
    ],
)
def test_online_commands_reject_bad_input(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    run_cli(capsys, "features", "apply", "-w", str(project))
    code, _, err = run_cli(capsys, *args, "-w", str(project))
    assert code == 2 and message in err


def test_backfill_reports_partitions_and_a_rejection_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "bf"
    run_cli(capsys, "init", str(folder))
    pd.DataFrame(
        {
            "driver_id": [1, 1],
            "event_timestamp": pd.to_datetime(["2024-03-01T10:00Z", "2024-03-02T10:00Z"]),
            "rating": [4.0, 42.0],
        }
    ).to_parquet(folder / "ratings.parquet")
    (folder / "features.py").write_text(
        "from modelyard.features import Entity, FeatureView, FileSource, Range\n"
        "driver = Entity('driver', {'driver_id': 'int64'})\n"
        f"source = FileSource({str(folder / 'ratings.parquet')!r})\n"
        "ratings = FeatureView('ratings', entity=driver, source=source,\n"
        "    features={'rating': 'float64'}, checks=[Range('rating', 0, 5)])\n"
    )
    w = ["-w", str(folder)]
    assert run_cli(capsys, "features", "apply", *w)[0] == 0
    code, out, err = run_cli(
        capsys,
        "features",
        "backfill",
        "ratings",
        "--start",
        "2024-03-01T00:00:00Z",
        "--end",
        "2024-03-03T00:00:00Z",
        *w,
    )
    assert code == 2
    assert "written" in out and "rejected (range(rating))" in out
    assert "1 of 2 partitions rejected, 1 written" in err
    assert "range(rating)" in err and "42.0" in err and "resume" in err


CHECKED = """
from modelyard.features import Entity, FeatureView, FileSource, Range
driver = Entity('driver', {'driver_id': 'int64'})
ratings = FeatureView('ratings', entity=driver, source=FileSource(SOURCE),
    features={'rating': 'float64'}, checks=[Range('rating', 0, 5)])
"""


def test_push_checks_rows_against_the_views_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    folder = tmp_path / "push"
    run_cli(capsys, "init", str(folder))
    source = folder / "ratings.parquet"
    pd.DataFrame(
        {
            "driver_id": [1],
            "event_timestamp": pd.to_datetime(["2024-03-01T10:00Z"]),
            "rating": [4.0],
        }
    ).to_parquet(source)
    (folder / "features.py").write_text(CHECKED.replace("SOURCE", repr(str(source))))
    w = ["-w", str(folder)]
    assert run_cli(capsys, "features", "apply", *w)[0] == 0
    bad = [
        {"driver_id": 5, "event_timestamp": "2024-03-02T00:00:00Z", "rating": 3.0},
        {"driver_id": 6, "event_timestamp": "2024-03-02T00:00:00Z", "rating": 42.0},
    ]
    code, _, err = run_cli(capsys, "features", "push", "ratings", "-r", json.dumps(bad), *w)
    assert code == 2 and "Traceback" not in err
    assert "'ratings' refused by check range(rating): row 1 has rating = 42.0" in err
    keys = '{"driver_id": [5, 6]}'
    code, out, _ = run_cli(capsys, "features", "get-online", "-f", "ratings:rating", "-k", keys, *w)
    assert code == 0 and [r["rating"]["status"] for r in json.loads(out)] == ["missing"] * 2
    assert not (folder / ".modelyard" / "offline" / "push" / "ratings").exists()

    bad[1]["rating"] = 5.0
    code, out, err = run_cli(capsys, "features", "push", "ratings", "-r", json.dumps(bad), *w)
    assert code == 0, err
    assert "pushed 2 rows" in out
    code, out, _ = run_cli(capsys, "features", "get-online", "-f", "ratings:rating", "-k", keys, *w)
    assert [r["rating"]["value"] for r in json.loads(out)] == [3.0, 5.0]


def test_get_online_reads_key_columns_and_refuses_keys_of_the_wrong_type(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    w = ["-w", str(project)]
    run_cli(capsys, "features", "apply", *w)
    window = ["--start", "2023-12-01T00:00:00Z", "--end", "2024-01-05T00:00:00Z"]
    assert run_cli(capsys, "features", "materialize", *window, *w)[0] == 0
    statuses = []
    for keys in (
        '{"driver_id": [1, 2, 3]}',
        '[{"driver_id": 1}, {"driver_id": 2}, {"driver_id": 3}]',
    ):
        code, out, err = run_cli(capsys, "features", "get-online", "-f", "model_v1", "-k", keys, *w)
        assert code == 0, err
        statuses.append([r["rating"]["status"] for r in json.loads(out)])
    # Read now, long after the 7-day ttl: rows 1 and 2 exist (expired), 3 does not.
    assert statuses == [["expired", "expired", "missing"]] * 2
    code, out, err = run_cli(
        capsys, "features", "get-online", "-f", "model_v1", "-k", '{"driver_id": "1"}', *w
    )
    assert code == 2 and out == "" and "Traceback" not in err
    assert "entity key 'driver_id' (of feature view 'driver_stats') is int64, got '1'" in err


def test_materialize_into_a_new_online_store_writes_every_row_and_says_so(
    project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    w = ["-w", str(project)]
    run_cli(capsys, "features", "apply", *w)
    end = ["--end", "2024-01-01T12:00:00Z"]
    code, out, _ = run_cli(capsys, "features", "materialize", *end, *w)
    assert code == 0 and "│ 1 " in out and "had no watermark for driver_stats" in out
    config = project / "modelyard.toml"
    default = '# url = "sqlite:///.modelyard/online.db"'
    assert default in config.read_text()
    other = f'url = "sqlite:///{tmp_path / "other.db"}"'
    config.write_text(config.read_text().replace(default, other))
    code, out, _ = run_cli(capsys, "features", "materialize", "--end", "2024-01-05T00:00Z", *w)
    flat = " ".join(out.split())
    assert code == 0 and "│ 2 " in out and "had no watermark for driver_stats" in flat
    assert str(tmp_path / "other.db") in "".join(out.split())
    code, out, _ = run_cli(capsys, "features", "materialize", "--end", "2024-01-05T00:00Z", *w)
    assert code == 0 and "│ 0 " in out and "no watermark" not in out


def test_get_online_from_a_wrong_sqlite_online_url_is_an_error_and_creates_nothing(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A wrong path silently became a new, empty store that answered "missing", exit 0.
    w = ["-w", str(project)]
    run_cli(capsys, "features", "apply", *w)
    assert run_cli(capsys, "features", "materialize", "--end", "2024-01-05T00:00Z", *w)[0] == 0
    read = ["features", "get-online", "-f", "model_v1", "-k", '{"driver_id": [1]}', *w]
    typo = tmp_path / "typo.db"
    monkeypatch.setenv("MODELYARD_ONLINE_URL", f"sqlite:///{typo}")
    code, out, err = run_cli(capsys, *read)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"online store {typo} does not exist: nothing was materialized or pushed there" in err
    assert "run 'modelyard features materialize'" in err and not typo.exists()
    nowhere = tmp_path / "nowhere" / "online.db"
    monkeypatch.setenv("MODELYARD_ONLINE_URL", f"sqlite:///{nowhere}")
    code, out, err = run_cli(capsys, *read)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "does not exist; fix online.url" in err and "env MODELYARD_ONLINE_URL" in err
    assert not nowhere.parent.exists()


def test_materialize_creates_a_new_configured_online_store_that_get_online_then_reads(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    w = ["-w", str(project)]
    run_cli(capsys, "features", "apply", *w)
    monkeypatch.setenv("MODELYARD_ONLINE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    code, _, err = run_cli(capsys, "features", "materialize", "--end", "2024-01-05T00:00Z", *w)
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "features", "get-online", "-f", "model_v1", "-k", '{"driver_id": [2]}', *w
    )
    assert code == 0, err
    [row] = json.loads(out)
    assert row["rating"]["event_time"] == "2024-01-02T00:00:00+00:00"  # read from new.db


def test_get_online_before_any_materialize_reads_the_default_store_as_empty(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    w = ["-w", str(project)]
    run_cli(capsys, "features", "apply", *w)
    code, out, err = run_cli(
        capsys, "features", "get-online", "-f", "model_v1", "-k", '{"driver_id": [1]}', *w
    )
    assert code == 0, err
    assert json.loads(out)[0]["rating"]["status"] == "missing"
