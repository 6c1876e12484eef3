"""``modelyard monitor drift``: served traffic against the training data's profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

import modelyard
from cli_support import run_cli
from modelyard.serving import create_app
from monitor_support import train_diabetes


@pytest.fixture
def trained(sqlite_workspace: modelyard.Workspace) -> tuple[modelyard.Workspace, pd.DataFrame]:
    """Ridge on the diabetes data, logged with its training rows as the reference."""
    return sqlite_workspace, train_diabetes(sqlite_workspace)


def serve_rows(ws: modelyard.Workspace, rows: list[dict[str, Any]]) -> None:
    log = ws.predictions
    app = create_app(ws.registry, ["diabetes@production"], prediction_log=log)

    async def go() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for start in range(0, len(rows), 50):
                    r = await c.post("/v1/models/diabetes/predict", json=rows[start : start + 50])
                    assert r.status_code == 200

    anyio.run(go)


def test_the_reference_profile_is_stored_with_the_version(trained: Any) -> None:
    ws, x = trained
    reference = ws.registry.reference_profile("diabetes@production")
    assert reference is not None and set(reference.columns) == set(x.columns)


def test_shifted_traffic_is_flagged_in_that_column_only(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = trained
    rng = np.random.default_rng(3)
    traffic = x.sample(400, replace=True, random_state=3).reset_index(drop=True)
    traffic["bmi"] = traffic["bmi"] + 2 * x["bmi"].std() + rng.normal(0, 0.001, len(traffic))
    serve_rows(ws, traffic.to_dict(orient="records"))

    code, out, err = run_cli(
        capsys, "monitor", "drift", "diabetes@production", "--window", "1h", "--json", "-w",
        str(ws.root),
    )  # fmt: skip
    report = json.loads(out)

    assert code == 0, err
    assert report["rows_current"] == 400
    assert report["drifted_columns"] == ["bmi"]

    code, out, _ = run_cli(capsys, "monitor", "drift", "diabetes@production", "-w", str(ws.root))
    assert code == 0 and "1 of 10 columns drifted: bmi" in out


def test_a_file_can_be_compared_instead_of_traffic(
    trained: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = trained
    path = tmp_path / "current.parquet"
    x.sample(300, random_state=1).to_parquet(path)

    code, out, err = run_cli(
        capsys, "monitor", "drift", "diabetes/1", "--current", str(path), "--json", "-w",
        str(ws.root),
    )  # fmt: skip

    assert code == 0, err
    assert json.loads(out)["drifted_columns"] == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--window", "1h"], "no predictions of diabetes/1 in the last 1:00:00"),
        (["--window", "soon"], "window 'soon' is not a duration"),
        (["--current", "/nonexistent.parquet"], "does not exist"),
    ],
)
def test_bad_requests_get_one_line_and_exit_2(
    trained: Any, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    ws, _ = trained
    code, out, err = run_cli(
        capsys, "monitor", "drift", "diabetes@production", *args, "-w", str(ws.root)
    )
    assert code == 2
    assert says in err and "Traceback" not in err + out


def test_a_model_logged_without_reference_data_says_how_to_get_one(
    sqlite_workspace: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, Ridge().fit(x, y), input_example=x.head(5))
    ws.registry.register("plain", logged)

    code, _, err = run_cli(capsys, "monitor", "drift", "plain/1", "-w", str(ws.root))

    assert ws.registry.reference_profile("plain/1") is None
    assert code == 2 and "reference_data=" in err


@pytest.mark.parametrize("content", [b"age,bmi\n0.1,0.2\n", b"", b"PAR1 but not really"])
def test_a_file_that_is_not_parquet_gets_one_line_and_exit_2(
    trained: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    ws, _ = trained
    path = tmp_path / "current.csv"
    path.write_bytes(content)

    code, out, err = run_cli(
        capsys, "monitor", "drift", "diabetes/1", "--current", str(path), "-w", str(ws.root)
    )

    assert code == 2 and "Traceback" not in err + out
    assert f"--current {path} is not a readable Parquet file" in err
    assert len(err.strip().splitlines()) == 1


def test_an_empty_parquet_file_is_named_as_empty(
    trained: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was "no rows in the current window; profile a non-empty data set": no window
    # was involved, and "profile" is advice for the Python API.
    ws, x = trained
    path = tmp_path / "current.parquet"
    x.head(0).to_parquet(path)

    code, out, err = run_cli(
        capsys, "monitor", "drift", "diabetes/1", "--current", str(path), "-w", str(ws.root)
    )

    assert code == 2 and "Traceback" not in err + out
    assert err.strip() == f"error: --current {path} has no rows; pass a file with the rows to judge"


def test_a_column_whose_nulls_jump_is_flagged_in_the_table_and_the_json(
    trained: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = trained
    frame = x.sample(300, random_state=1).reset_index(drop=True)
    frame.loc[::2, "bmi"] = np.nan  # 0% -> 50% nulls
    path = tmp_path / "current.parquet"
    frame.to_parquet(path)
    args = ("monitor", "drift", "diabetes/1", "--current", str(path), "-w", str(ws.root))

    code, out, err = run_cli(capsys, *args, "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["status"] == "ok" and report["drifted_columns"] == ["bmi"]
    assert report["columns"]["bmi"]["metrics"]["null_rate_change"] == pytest.approx(0.5)

    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "nulls Δ" in out and "null rate 0.0% -> 50.0%" in out
    assert "1 of 10 columns drifted: bmi" in out
