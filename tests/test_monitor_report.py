"""``modelyard monitor report``: one offline page (or JSON) of drift, quality and traffic."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

import modelyard
import monitor_support
from cli_support import run_cli


def register(ws: modelyard.Workspace, name: str, model: Any, x: pd.DataFrame) -> None:
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, model, input_example=x.head(20), reference_data=x)
    v = ws.registry.register(name, logged)
    ws.registry.set_alias(name, "production", v.version)


def exchange(ws: modelyard.Workspace, name: str, calls: list[tuple[str, Any]]) -> list[Any]:
    """The JSON answers of ``calls``, each of which must succeed."""
    answers = monitor_support.exchange(ws, name, calls)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    return [r.json() for r in answers]


def predict_calls(name: str, rows: pd.DataFrame) -> list[tuple[str, Any]]:
    return [
        (f"/v1/models/{name}/predict", rows.iloc[i : i + 50].to_dict(orient="records"))
        for i in range(0, len(rows), 50)
    ]


@pytest.fixture
def served(sqlite_workspace: modelyard.Workspace) -> tuple[modelyard.Workspace, pd.DataFrame]:
    """Ridge on the diabetes data, with 300 served rows whose ``bmi`` has shifted."""
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    ws = sqlite_workspace
    register(ws, "diabetes", Ridge().fit(x, y), x)
    traffic = x.sample(300, replace=True, random_state=3).reset_index(drop=True)
    rng = np.random.default_rng(3)
    traffic["bmi"] = traffic["bmi"] + 2 * x["bmi"].std() + rng.normal(0, 0.001, len(traffic))
    exchange(ws, "diabetes", predict_calls("diabetes", traffic))
    return ws, x


def report(capsys: pytest.CaptureFixture[str], ws: Any, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "monitor", "report", "diabetes@production", *args, "-w", str(ws.root))


def test_the_html_page_shows_every_column_and_marks_the_drifted_one(
    served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = served
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "report.html"

    code, out, err = report(capsys, ws, "-o", str(path), "--window", "1h")
    page = path.read_text()

    assert code == 0, err
    assert "1 of 10 columns drifted" in out
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for column in x.columns:
        assert f"<td>{column}</td>" in page
    assert re.search(r'<tr class="drifted"><td>bmi</td>', page)
    assert page.count('<tr class="drifted">') == 1
    assert "<h3>bmi (drifted)</h3><svg" in page
    assert page.count("<svg") >= len(x.columns) + 2  # a histogram per column, latency, volume
    assert not re.search(r"https?://", page), "the page must work offline"
    assert "<script" not in page and "<link" not in page
    assert "no labelled predictions in this window" in page
    assert list(path.parent.iterdir()) == [path], "no temporary file is left behind"


def test_json_has_drift_latency_volume_and_quality_per_day(
    served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = served
    monitor_support.lower_minimums(ws, labels=40)
    rows = x.sample(40, random_state=0)
    [answer] = exchange(ws, "diabetes", predict_calls("diabetes", rows))
    feedback = [
        {"request_id": answer["request_id"], "row": i, "label": float(v)}
        for i, v in enumerate(rows["age"] * 100)
    ]
    exchange(ws, "diabetes", [("/v1/feedback", feedback)])
    path = tmp_path / "report.json"

    code, _, err = report(capsys, ws, "-o", str(path), "--format", "json")
    data = json.loads(path.read_text())

    assert code == 0, err
    assert {"model", "window", "drift", "quality", "latency", "volume"} <= set(data)
    assert data["model"] == "diabetes/1" and data["window"] == "1d"
    assert data["drift"]["drifted_columns"] == ["bmi"]
    assert sum(v["predictions"] for v in data["volume"]) == 340
    assert sum(r["requests"] for r in data["latency"]) == 7
    assert all(0 <= r["p50_ms"] <= r["p99_ms"] for r in data["latency"])
    [day] = data["quality"]["days"]
    assert data["quality"]["labelled"] and day["rows"] == 40 and "mae" in day

    html_path = tmp_path / "report.html"
    assert report(capsys, ws, "-o", str(html_path))[0] == 0
    assert "<th>mae</th>" in html_path.read_text()


def test_an_hour_of_batch_scores_only_is_a_row_without_latency(
    served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Served hours have a latency row, batch-scored hours none: the table goes by hour."""
    from modelyard.serving import score

    ws, x = served
    x.head(30).to_parquet(tmp_path / "batch.parquet")
    earlier = datetime.now(UTC) - timedelta(hours=3)
    score(
        ws.registry, "diabetes@production", tmp_path / "batch.parquet", tmp_path / "out.parquet",
        prediction_log=ws.predictions, logged_at=earlier, keep_input=False,
    )  # fmt: skip
    path = tmp_path / "report.html"

    code, _, err = report(capsys, ws, "-o", str(path))

    assert code == 0, err
    row = r"<tr><td>\d{4}-[^<]*</td><td>(\d+)</td><td>(\d+)</td><td>([^<]*)</td>"
    batch, *served_hours = re.findall(row, path.read_text())
    assert batch == ("30", "0", "")  # predictions, no requests, no p50
    assert sum(int(n) for n, _, _ in served_hours) == 300
    assert all(int(r) > 0 and p50 for _, r, p50 in served_hours)


def test_user_strings_are_html_escaped(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {"<b>x</b>": rng.normal(size=200), "color": rng.choice(["<i>red</i>", "blue"], 200)}
    )
    register(ws, "odd", lambda frame: frame["<b>x</b>"] * 2, x)
    monitor_support.lower_minimums(ws, rows=60)
    shifted = x.head(60).assign(**{"<b>x</b>": lambda f: f["<b>x</b>"] + 5})
    exchange(ws, "odd", predict_calls("odd", shifted))
    path = tmp_path / "odd.html"

    code, _, err = run_cli(
        capsys, "monitor", "report", "odd@production", "-o", str(path), "-w", str(ws.root)
    )
    page = path.read_text()

    assert code == 0, err
    assert "<b>x</b>" not in page and "<i>red</i>" not in page
    assert '<tr class="drifted"><td>&lt;b&gt;x&lt;/b&gt;</td>' in page
    assert "&lt;i&gt;red&lt;/i&gt;" in page


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--window", "1h"], "no predictions of diabetes/1 in the last 1:00:00"),
        (["--window", "soon"], "window 'soon' is not a duration"),
        (["--format", "pdf"], "--format 'pdf' is not known"),
    ],
)
def test_bad_requests_get_one_line_and_exit_2(
    sqlite_workspace: modelyard.Workspace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    says: str,
) -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    register(sqlite_workspace, "diabetes", Ridge().fit(x, y), x)
    path = tmp_path / "report.html"

    code, out, err = report(capsys, sqlite_workspace, "-o", str(path), *args)

    assert code == 2
    assert says in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out and not path.exists()


def test_a_model_without_a_reference_profile_says_how_to_get_one(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, Ridge().fit(x, y), input_example=x.head(5))
    ws.registry.register("plain", logged)

    code, _, err = run_cli(
        capsys, "monitor", "report", "plain/1", "-o", str(tmp_path / "r.html"), "-w", str(ws.root)
    )

    assert code == 2 and "reference_data=" in err


def test_the_page_shows_null_rate_and_unseen_category_drift() -> None:
    from modelyard.monitoring import drift
    from modelyard.monitoring._report import render_html

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=500), "s": rng.choice(["a", "b"], 500)})
    current = reference.copy()
    current.loc[::2, "x"] = np.nan
    current.loc[:149, "s"] = "zz"
    data = {
        "model": "m/1",
        "window": "1d",
        "since": "s",
        "until": "u",
        "drift": drift(reference, current).to_json_dict(),
        "quality": {"labelled": False, "note": "none", "days": []},
        "latency": [],
        "volume": [],
    }

    page = render_html(data)

    assert "2 of 2 columns drifted" in page and "<th>nulls Δ</th><th>unseen</th>" in page
    assert "null rate 0.0% -&gt; 50.0%" in page and "unseen categories 30.0%" in page


def test_a_file_is_reported_against_the_reference_with_current(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    ws = sqlite_workspace
    register(ws, "diabetes", Ridge().fit(x, y), x)
    shifted = x.sample(300, replace=True, random_state=5).reset_index(drop=True)
    shifted["s5"] = shifted["s5"] + 3 * x["s5"].std()
    current = tmp_path / "current.parquet"
    shifted.to_parquet(current)
    path = tmp_path / "report.html"

    code, out, err = report(capsys, ws, "-o", str(path), "--current", str(current))
    page = path.read_text()

    assert code == 0, err
    assert "1 of 10 columns drifted" in out
    assert re.search(r'<tr class="drifted"><td>s5</td>', page)
    assert f"the file {current}" in page and "carries no labels" in page
    assert "Latency and volume" not in page  # a file has no traffic
    code, out, _ = report(capsys, ws, "-o", str(tmp_path / "r.json"), "--current", str(current),
                          "--format", "json")  # fmt: skip
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["source"] == str(current) and data["drift"]["drifted_columns"] == ["s5"]
    bad = tmp_path / "other.parquet"
    pd.DataFrame({"unrelated": [1.0]}).to_parquet(bad)
    code, _, err = report(capsys, ws, "-o", str(tmp_path / "x.html"), "--current", str(bad))
    assert code == 2 and "none of the model's input columns" in err
    assert not (tmp_path / "x.html").exists()


def test_the_dashboard_shows_the_same_report(served: Any) -> None:
    import anyio
    import httpx

    from modelyard.ui import create_ui_app

    ws, _ = served
    app = create_ui_app(ws)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            paths = ["/ui/monitoring/diabetes/report?window=1h", "/ui/monitoring/nope/report"]
            return [await c.get(p) for p in paths]

    page, missing = anyio.run(go)
    assert page.status_code == 200
    assert re.search(r'<tr class="drifted"><td>bmi</td>', page.text)
    assert missing.status_code == 404
