"""One rule for times on the command line, in every command that takes one.

A time needs a zone (``Z``, ``+02:00``); a bare day is that day in UTC; a time without a
zone is refused with exit 2 and one line, unless ``--assume-utc`` reads it as UTC.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cli_support import run_cli

PIPELINES = """
import json
from pathlib import Path


def daily(ctx):
    out = Path(ctx.root) / "out"
    out.mkdir(exist_ok=True)
    with open(out / "daily.jsonl", "a") as f:
        f.write(json.dumps({"start": ctx.interval_start.isoformat()}) + "\\n")
"""

JOBS = """
[jobs.daily]
function = "pipelines:daily"
schedule = "0 2 * * *"
"""

FEATURES = """
from modelyard.features import Entity, FeatureView, FileSource
driver = Entity('driver', {'driver_id': 'int64'})
ratings = FeatureView('ratings', entity=driver, source=FileSource(%r),
    features={'rating': 'float64'})
"""


@pytest.fixture
def folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace with one feature view (two days of ratings) and one daily job."""
    root = tmp_path / "ws"
    assert run_cli(capsys, "init", str(root))[0] == 0
    pd.DataFrame(
        {
            "driver_id": [1, 1],
            "event_timestamp": pd.to_datetime(["2024-03-01T10:00Z", "2024-03-02T10:00Z"]),
            "rating": [4.0, 4.5],
        }
    ).to_parquet(root / "ratings.parquet")
    (root / "features.py").write_text(FEATURES % str(root / "ratings.parquet"))
    (root / "pipelines.py").write_text(PIPELINES)
    with open(root / "modelyard.toml", "a") as f:
        f.write(JOBS)
    pd.DataFrame(
        {"driver_id": [1], "event_timestamp": pd.to_datetime(["2024-03-02T12:00"])}
    ).to_parquet(root / "naive_entities.parquet")
    assert run_cli(capsys, "features", "apply", "-w", str(root))[0] == 0
    return root


COMMANDS = {
    "features materialize": ["features", "materialize", "--end", "2024-03-03T00:00"],
    "features backfill": [
        *("features", "backfill", "ratings"),
        *("--start", "2024-03-01T00:00", "--end", "2024-03-03T00:00:00"),
    ],
    "features get-historical": [
        *("features", "get-historical", "--entities", "{root}/naive_entities.parquet"),
        *("-f", "ratings:rating", "-o", "{root}/training.parquet"),
    ],
    "jobs run": ["jobs", "run", "daily", "--date", "2026-11-24T02:00"],
    "jobs backfill": [
        *("jobs", "backfill", "daily", "--start", "2026-11-01T02:00"),
        *("--end", "2026-11-02T02:00"),
    ],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_time_without_a_zone_is_refused_unless_assume_utc(
    folder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    args = [a.format(root=folder) for a in COMMANDS[command]] + ["-w", str(folder)]

    code, out, err = run_cli(capsys, *args)
    assert code == 2, out + err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "time zone" in err and "--assume-utc" in err
    assert not (folder / "out").exists() and not (folder / "training.parquet").exists()

    code, out, err = run_cli(capsys, *args, "--assume-utc")
    assert code == 0, out + err


def test_assume_utc_reads_the_time_as_utc(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = ["-w", str(folder)]
    code, out, err = run_cli(capsys, *COMMANDS["jobs run"], "--assume-utc", *w)
    assert code == 0, out + err
    seen = [json.loads(x) for x in (folder / "out" / "daily.jsonl").read_text().splitlines()]
    assert seen == [{"start": "2026-11-24T02:00:00+00:00"}]
    code, out, err = run_cli(capsys, *COMMANDS["features backfill"], "--assume-utc", *w)
    assert code == 0, out + err
    assert "2024-03-01T00:00:00+00:00" in out and "2024-03-02T00:00:00+00:00" in out


def test_a_time_with_a_zone_and_a_bare_day_need_no_option(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["-w", str(folder)]
    code, out, err = run_cli(capsys, "jobs", "run", "daily", "--date", "2026-11-24T04:00+02:00", *w)
    assert code == 0, out + err
    code, out, err = run_cli(capsys, "features", "materialize", "--end", "2024-03-03", *w)
    assert code == 0, out + err
    code, out, err = run_cli(
        capsys, "jobs", "backfill", "daily", "--start", "2026-11-01", "--end", "2026-11-01", *w
    )
    assert code == 0 and "1 slot(s) run" in out, out + err
    starts = [
        json.loads(x)["start"] for x in (folder / "out" / "daily.jsonl").read_text().splitlines()
    ]
    assert starts == ["2026-11-24T02:00:00+00:00", "2026-11-01T02:00:00+00:00"]
