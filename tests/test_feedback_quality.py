"""Delayed labels: ``POST /v1/feedback`` and ``modelyard monitor quality``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, mean_absolute_error, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from cli_support import run_cli
from monitor_support import exchange, lower_minimums


def register(ws: modelyard.Workspace, name: str, model: Any, x: pd.DataFrame, y: Any) -> Any:
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, model.fit(x, y), input_example=x.head(10))
    v = ws.registry.register(name, logged)
    ws.registry.set_alias(name, "production", v.version)
    return model


@pytest.fixture
def cancer(
    sqlite_workspace: modelyard.Workspace,
) -> tuple[modelyard.Workspace, Any, pd.DataFrame, Any]:
    bunch = load_breast_cancer(as_frame=True)
    x, y = bunch.data, bunch.target.map({0: "malignant", 1: "benign"})
    model = register(
        sqlite_workspace, "cancer", make_pipeline(StandardScaler(), LogisticRegression()), x, y
    )
    return sqlite_workspace, model, x, y


def test_labels_sent_as_feedback_give_the_classifiers_quality(
    cancer: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, model, x, y = cancer
    rows = x.sample(120, random_state=0)
    truth = y.loc[rows.index]
    predict = [
        ("/v1/models/cancer/predict", rows.iloc[i : i + 40].to_dict(orient="records"))
        for i in range(0, 120, 40)
    ]
    answers = exchange(ws, "cancer", predict)
    ids = [a.json()["request_id"] for a in answers]
    feedback = [
        {"request_id": ids[i // 40], "row": i % 40, "label": str(label)}
        for i, label in enumerate(truth)
    ]
    [ack] = exchange(ws, "cancer", [("/v1/feedback", feedback)])

    code, out, err = run_cli(capsys, "monitor", "quality", "cancer", "--json", "-w", str(ws.root))
    [group] = json.loads(out)["groups"]

    assert ack.status_code == 200 and ack.json()["accepted"] == 120
    assert code == 0, err
    assert group["rows"] == 120 and group["version"] == 1 and group["variant"] == "production"
    assert group["accuracy"] == pytest.approx(accuracy_score(truth, model.predict(rows)))
    proba = model.predict_proba(rows)[:, list(model.classes_).index("malignant")]
    assert group["roc_auc"] == pytest.approx(roc_auc_score(truth == "malignant", proba))
    assert 0 <= group["calibration_error"] <= 1 and 0 < group["pr_auc"] <= 1


@pytest.mark.parametrize(
    ("item", "field", "says"),
    [
        ({"request_id": "nope", "label": "benign"}, "request_id", "no prediction has request id"),
        ({"label": "benign"}, "body", "request_id"),
        ({"request_id": "known", "label": 1}, "label", "predicts string values"),
        ({"request_id": "known", "row": 5, "label": "benign"}, "row", "had 1 rows"),
        ({"request_id": "known", "label": "abc"}, "label", "predicts one of benign, malignant"),
    ],
)
def test_bad_feedback_is_a_422_naming_the_field_and_nothing_is_kept(
    cancer: Any, item: dict[str, Any], field: str, says: str
) -> None:
    ws, _, x, _ = cancer
    record = x.iloc[0].to_dict()
    first, bad, good = exchange(
        ws,
        "cancer",
        [
            ("/v1/models/cancer/predict", record),
            ("/v1/feedback", item),
            ("/v1/models/cancer/predict", record),
        ],
    )
    assert first.status_code == 200 and good.status_code == 200  # nothing else stops working
    # "known" stands for a request id this server answered.
    if item.get("request_id") == "known":
        item = {**item, "request_id": first.json()["request_id"]}
        [bad] = exchange(ws, "cancer", [("/v1/feedback", item)])
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == field and says in bad.json()["message"]
    assert ws.predictions.read_labels().num_rows == 0


def test_a_regressors_quality_from_a_label_file(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = register(ws, "sugar", Ridge(), x, y)
    lower_minimums(ws, labels=30)
    rows = x.head(30)
    [answer] = exchange(ws, "sugar", [("/v1/models/sugar/predict", rows.to_dict(orient="records"))])
    rid = answer.json()["request_id"]
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": rid, "row": range(30), "label": y.head(30)}).to_parquet(path)

    code, out, err = run_cli(
        capsys, "monitor", "quality", "sugar@production", "--labels", str(path), "--json",
        "-w", str(ws.root),
    )  # fmt: skip
    [group] = json.loads(out)["groups"]

    assert code == 0, err
    assert group["mae"] == pytest.approx(mean_absolute_error(y.head(30), model.predict(rows)))
    assert group["rmse"] >= group["mae"]


def test_no_labels_yet_is_one_line_and_exit_2(
    cancer: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _, x, _ = cancer
    exchange(ws, "cancer", [("/v1/models/cancer/predict", x.iloc[0].to_dict())])

    code, _, err = run_cli(capsys, "monitor", "quality", "cancer", "-w", str(ws.root))

    assert code == 2 and "no labelled predictions" in err


def test_too_many_labels_in_one_body_is_a_413_and_nothing_is_kept(cancer: Any) -> None:
    ws, _, x, _ = cancer
    [first] = exchange(ws, "cancer", [("/v1/models/cancer/predict", x.iloc[0].to_dict())])
    item = {"request_id": first.json()["request_id"], "label": "benign"}

    [big] = exchange(ws, "cancer", [("/v1/feedback", [item] * 10_001)])

    assert big.status_code == 413 and big.json()["code"] == "body_too_large"
    assert "send at most 10000 per request" in big.json()["message"]
    assert ws.predictions.read_labels().num_rows == 0
