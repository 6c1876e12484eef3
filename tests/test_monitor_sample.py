"""The sample-size rule: too few rows or labels is "not enough data", never a verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

import modelyard
from cli_support import run_cli
from modelyard.config import SETTINGS, load_config
from modelyard.errors import ConfigError
from modelyard.monitoring import SampleSize, build_report, parse_window, write_report
from modelyard.monitoring._sample import DEFAULT_MIN_LABELS, DEFAULT_MIN_ROWS
from modelyard.release._canary_config import CanarySettings
from modelyard.release._canary_judge import min_drift_rows
from monitor_support import exchange, lower_minimums, train_diabetes

DRIFT_RULE = """
[[alerts.rules]]
name = "drift"
model = "diabetes@production"
metric = "drift.share"
condition = "> 0.05"
window = "1d"
severity = "critical"
on_no_data = "firing"
"""

QUALITY_RULE = """
[[alerts.rules]]
name = "mae"
model = "diabetes@production"
metric = "quality.mae"
condition = "> 1"
window = "1d"
"""


@pytest.fixture
def trained(sqlite_workspace: modelyard.Workspace) -> tuple[modelyard.Workspace, pd.DataFrame]:
    return sqlite_workspace, train_diabetes(sqlite_workspace)


def add_rules(ws: modelyard.Workspace, rules: str) -> None:
    path = ws.root / "modelyard.toml"
    path.write_text(path.read_text() + rules)


def serve_shifted(ws: modelyard.Workspace, x: pd.DataFrame, n: int, seed: int = 1) -> list[Any]:
    """``n`` training rows with every column moved far off: drift everywhere, if judged."""
    rows = x.sample(n, random_state=seed, replace=True).reset_index(drop=True) + 1.0
    calls = [
        ("/v1/models/diabetes/predict", rows.iloc[i : i + 50].to_dict(orient="records"))
        for i in range(0, n, 50)
    ]
    answers = exchange(ws, "diabetes", calls)
    assert all(a.status_code == 200 for a in answers)
    return answers


def check(capsys: pytest.CaptureFixture[str], ws: modelyard.Workspace) -> dict[str, Any]:
    code, out, err = run_cli(capsys, "monitor", "check", "--json", "-w", str(ws.root))
    assert code == 0, err
    (rule,) = json.loads(out)["rules"]
    return dict(rule)


def test_one_logged_row_is_not_enough_data_and_the_drift_rule_stays_quiet(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = trained
    add_rules(ws, DRIFT_RULE)
    serve_shifted(ws, x, 1)

    code, out, err = run_cli(
        capsys, "monitor", "drift", "diabetes@production", "--json", "-w", str(ws.root)
    )
    report = json.loads(out)
    assert code == 0, err
    assert report["status"] == "not_enough_data" and report["rows_current"] == 1
    assert report["drifted_columns"] == [] and report["columns"] == {}
    assert "fewer than monitoring.min_rows = 200" in report["note"]

    code, out, _ = run_cli(capsys, "monitor", "drift", "diabetes@production", "-w", str(ws.root))
    assert code == 0 and "not enough data: 1 row" in out and "drifted" not in out

    # Not enough data never fires, not even for a rule that fires on an empty window.
    rule = check(capsys, ws)
    assert rule["state"] == "ok" and rule["notified"] is None and rule["value"] is None
    assert rule["note"].startswith("not enough data: 1 row")
    code, out, _ = run_cli(capsys, "monitor", "alerts", "--json", "-w", str(ws.root))
    assert json.loads(out)["history"] == []


def test_at_the_minimum_drift_is_judged_as_before(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = trained
    add_rules(ws, DRIFT_RULE)
    lower_minimums(ws, rows=50)
    serve_shifted(ws, x, 49)
    assert check(capsys, ws)["state"] == "ok"

    serve_shifted(ws, x, 1, seed=2)  # now 50 rows: exactly the minimum

    code, out, err = run_cli(
        capsys, "monitor", "drift", "diabetes@production", "--json", "-w", str(ws.root)
    )
    report = json.loads(out)
    assert code == 0, err
    assert report["status"] == "ok" and report["rows_current"] == 50
    assert len(report["drifted_columns"]) == 10
    rule = check(capsys, ws)
    assert rule["state"] == "firing" and rule["value"] == 1.0 and rule["note"] == ""


def test_three_labels_are_not_enough_for_quality(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = trained
    add_rules(ws, QUALITY_RULE)
    _, y = load_diabetes(return_X_y=True, as_frame=True)
    [answer] = exchange(
        ws, "diabetes", [("/v1/models/diabetes/predict", x.head(3).to_dict("records"))]
    )
    rid = answer.json()["request_id"]
    labels = [{"request_id": rid, "row": i, "label": float(y[i]) + 100} for i in range(3)]
    assert exchange(ws, "diabetes", [("/v1/feedback", labels)])[0].status_code == 200

    code, out, err = run_cli(
        capsys, "monitor", "quality", "diabetes@production", "--json", "-w", str(ws.root)
    )
    assert code == 0, err
    [group] = json.loads(out)["groups"]
    assert group["status"] == "not_enough_data" and group["rows"] == 3
    assert "mae" not in group
    assert "not enough labels: 3 labelled predictions" in group["note"]
    assert "monitoring.min_labels = 100" in group["note"]

    code, out, _ = run_cli(capsys, "monitor", "quality", "diabetes@production", "-w", str(ws.root))
    assert code == 0 and "not enough labels" in out

    rule = check(capsys, ws)  # an MAE far above the limit on three labels: no alert
    assert rule["state"] == "ok" and rule["value"] is None
    assert rule["note"].startswith("not enough labels")

    lower_minimums(ws, labels=3)
    rule = check(capsys, ws)
    assert rule["state"] == "firing" and rule["value"] > 1


def test_the_report_says_not_enough_data(trained: Any, tmp_path: Path) -> None:
    ws, x = trained
    serve_shifted(ws, x, 5)

    data = build_report(ws.registry, "diabetes@production", ws.predictions, parse_window("1d"))
    path = tmp_path / "report.html"
    write_report({**data, "window": "1d"}, path)

    assert data["drift"]["status"] == "not_enough_data"
    page = path.read_text()
    assert "not enough data: 5 rows" in page and "columns drifted" not in page

    judged = build_report(
        ws.registry,
        "diabetes@production",
        ws.predictions,
        parse_window("1d"),
        sample=SampleSize(min_rows=5),
    )
    assert judged["drift"]["status"] == "ok" and len(judged["drift"]["drifted_columns"]) == 10


def test_the_minimums_are_settings_with_a_checked_range(tmp_path: Path) -> None:
    defaults = {s.key: s.default for s in SETTINGS}
    assert defaults["monitoring.min_rows"] == DEFAULT_MIN_ROWS
    assert defaults["monitoring.min_labels"] == DEFAULT_MIN_LABELS

    given = load_config(tmp_path, environ={"MODELYARD_MONITORING_MIN_ROWS": "30"})
    assert SampleSize.of(given) == SampleSize(min_rows=30, min_labels=DEFAULT_MIN_LABELS)

    bad = load_config(tmp_path, environ={"MODELYARD_MONITORING_MIN_LABELS": "0"})
    with pytest.raises(ConfigError, match="MODELYARD_MONITORING_MIN_LABELS.*1 or more"):
        SampleSize.of(bad)


def test_the_canary_reads_the_shared_minimum_unless_it_sets_its_own() -> None:
    shared = SampleSize(min_rows=50)

    assert min_drift_rows(CanarySettings(), shared) == (50, "monitoring.min_rows")
    assert min_drift_rows(CanarySettings(), SampleSize()) == (200, "monitoring.min_rows")
    own = CanarySettings.model_validate({"min_drift_rows": 300})
    assert min_drift_rows(own, shared) == (300, "min_drift_rows")


def test_rules_may_watch_the_null_rate_and_unseen_share_of_a_column(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = trained
    add_rules(
        ws,
        DRIFT_RULE.replace('"drift.share"', '"drift.null_rate_change.bmi"').replace(
            '"> 0.05"', '">= 0"'
        ),
    )
    lower_minimums(ws, rows=50)
    serve_shifted(ws, x, 50)

    rule = check(capsys, ws)

    assert rule["metric"] == "drift.null_rate_change.bmi"
    assert rule["state"] == "firing" and rule["value"] == 0.0
