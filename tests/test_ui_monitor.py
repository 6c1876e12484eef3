"""The dashboard's monitoring pages of one model, in process: a column's reference vs
current histogram, quality with the confusion matrix and ROC/PR curves, SLOs and alerts,
each on a real classifier whose predictions went through the real prediction log."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression, Perceptron
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import modelyard
from modelyard.monitoring import Checker
from modelyard.ui._charts import bars
from monitor_support import exchange, lower_minimums
from registry_support import doubler
from ui_support import get

HOSTILE = "<script>alert(1)</script>"
LONG = "a clinic with a rather long name indeed"
CLINICS = [HOSTILE, LONG, *(f"clinic-{i:02d}" for i in range(14))]
RULES = """
[[alerts.rules]]
name = "cancer-busy"
model = "cancer@production"
metric = "slo.requests"
condition = "> 0"
window = "1h"

[[alerts.rules]]
name = "cancer-p99"
model = "cancer@production"
metric = "slo.latency_p99_ms"
condition = ">0"
window = "1d"

[[alerts.rules]]
name = "cancer-errors"
model = "cancer@production"
metric = "slo.error_rate"
condition = "> 0.5"
window = "1d"
"""


def data() -> tuple[pd.DataFrame, pd.Series]:
    """Six columns of the breast-cancer data and a categorical ``clinic``."""
    bunch = load_breast_cancer(as_frame=True)
    x = bunch.data.iloc[:, :6].copy()
    x["clinic"] = [CLINICS[i % len(CLINICS)] for i in range(len(x))]
    return x, bunch.target.map({0: "malignant", 1: "benign"})


def classifier(final: Any) -> Any:
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["clinic"]), remainder=StandardScaler()
    )
    return make_pipeline(encode, final)


def register(ws: modelyard.Workspace, names: list[str], model: Any, x: pd.DataFrame) -> None:
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, model, input_example=x.head(10), reference_data=x)
    for name in names:
        ws.registry.set_alias(name, "production", ws.registry.register(name, logged).version)


def serve(ws: modelyard.Workspace, name: str, rows: pd.DataFrame, labels: pd.Series) -> None:
    """Predict ``rows`` 40 at a time through a server that logs them; label all of them."""
    path = f"/v1/models/{name}/predict"
    calls = [
        (path, rows.iloc[i : i + 40].to_dict(orient="records")) for i in range(0, len(rows), 40)
    ]
    answers = exchange(ws, name, calls)
    assert all(a.status_code == 200 for a in answers), answers[0].text
    ids = [a.json()["request_id"] for a in answers]
    feedback = [
        {"request_id": ids[i // 40], "row": i % 40, "label": str(label)}
        for i, label in enumerate(labels)
    ]
    [ack] = exchange(ws, name, [("/v1/feedback", feedback)])
    assert ack.status_code == 200, ack.text


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelyard.Workspace]:
    ws = modelyard.Workspace.init(tmp_path_factory.mktemp("ui-monitor") / "ws", environ={})
    lower_minimums(ws, rows=100, labels=20)
    with (ws.root / "modelyard.toml").open("a") as f:
        f.write(RULES)
    x, y = data()
    register(ws, ["cancer", "quiet"], classifier(LogisticRegression(max_iter=500)).fit(x, y), x)
    register(ws, ["hard"], classifier(Perceptron(random_state=0)).fit(x, y), x)
    rows = x.sample(120, random_state=0)
    serve(ws, "cancer", rows, y.loc[rows.index][:100])  # 20 rows are never labelled
    serve(ws, "hard", rows.head(40), y.loc[rows.index][:40])
    now = datetime.now(UTC)
    Checker(ws.metadata, ws.registry, ws.predictions, ws.features, now).run(ws.alerting)
    # Two hours on, the 1h window is empty: cancer-busy resolves, cancer-p99 still fires.
    later = now + timedelta(hours=2)
    Checker(ws.metadata, ws.registry, ws.predictions, ws.features, later).run(ws.alerting)
    try:
        yield ws
    finally:
        ws.close()


def xticks(svg: str) -> list[tuple[float, str]]:
    return [
        (float(x), text)
        for x, text in re.findall(r'<text class="xtick" x="([\d.]+)"[^>]*>([^<]*)</text>', svg)
    ]


def test_a_columns_histogram_has_both_series_and_readable_labels(ws: modelyard.Workspace) -> None:
    category, numeric = get(
        ws,
        "/ui/monitoring/cancer/columns/clinic",
        f"/ui/monitoring/cancer/columns/{quote('mean radius')}",
    )

    assert category.status_code == 200 and numeric.status_code == 200
    for page in (category, numeric):
        [svg] = re.findall(r"<svg.*?</svg>", page.text, re.S)
        assert ">reference</text>" in svg and ">current (1d)</text>" in svg
        assert svg.count("<rect") > 2 * 8  # two bars a bin, and the legend's keys
        assert "share of rows" in svg and "%</text>" in svg
    turned = xticks(category.text)
    assert 0 < len(turned) <= len(CLINICS) and "rotate(-45" in category.text
    gaps = [b[0] - a[0] for a, b in zip(turned, turned[1:], strict=False)]
    assert min(gaps) >= 16, "turned labels closer than 16 px would touch"
    assert all(len(html.unescape(t)) <= 14 for _, t in turned), "long categories are shortened"
    edges = xticks(numeric.text)
    assert len(edges) >= 4 and all(float(text) == float(text) for _, text in edges)
    widest = max(len(text) for _, text in edges) * 6
    assert min(b[0] - a[0] for a, b in zip(edges, edges[1:], strict=False)) >= widest
    assert "logged rows against" in category.text and 'id="verdict"' in category.text


def test_user_text_on_the_monitoring_pages_is_escaped(ws: modelyard.Workspace) -> None:
    pages = get(
        ws,
        "/ui/monitoring/cancer/columns/clinic",
        f"/ui/monitoring/cancer/columns/{quote(HOSTILE)}",
        "/ui/monitoring/cancer",
        f"/ui/monitoring/cancer/quality?alias={quote(HOSTILE)}",
    )
    for page in pages:
        assert HOSTILE not in page.text
    assert "&lt;script&gt;" in pages[0].text
    assert pages[1].status_code == 404 and "has no input column" in pages[1].text
    assert pages[3].status_code == 400  # not an alias name: a bad request, escaped


def test_without_traffic_the_column_page_says_so(ws: modelyard.Workspace) -> None:
    [page] = get(ws, "/ui/monitoring/quiet/columns/clinic?window=6h")

    assert page.status_code == 200 and "<svg" not in page.text.split("<h2>clinic")[1]
    assert "no predictions of quiet/1 in the last 6h" in page.text


def test_quality_shows_the_confusion_matrix_and_the_curves(ws: modelyard.Workspace) -> None:
    [page] = get(ws, "/ui/monitoring/cancer/quality")

    assert page.status_code == 200 and "100 labelled predictions of cancer/1" in page.text
    table = page.text.split('id="confusion"')[1].split("</table>")[0]
    counts = [int(c) for c in re.findall(r'<td class="num count h\d">(\d+)</td>', table)]
    assert len(counts) == 4 and sum(counts) == 100
    assert "actual" in table and "predicted" in table
    assert "ROC: " in page.text and "Precision-recall: " in page.text
    assert ">AUC 0." in page.text and "false positive rate" in page.text
    assert 'id="scores"' in page.text and "<th>roc_auc</th>" in page.text


def test_hard_labels_get_a_matrix_and_no_curves(ws: modelyard.Workspace) -> None:
    [page] = get(ws, "/ui/monitoring/hard/quality")

    assert 'id="confusion"' in page.text and "ROC: " not in page.text
    assert "no scores logged: ROC/PR need probabilities" in page.text


def test_no_labels_say_how_to_send_them(ws: modelyard.Workspace) -> None:
    [page] = get(ws, "/ui/monitoring/quiet/quality")

    assert page.status_code == 200 and "no labelled predictions of quiet/1" in page.text
    assert "POST /v1/feedback" in page.text and "modelyard monitor quality" in page.text


def test_the_model_page_lists_columns_slos_and_alerts_open_first(ws: modelyard.Workspace) -> None:
    page, quiet = get(ws, "/ui/monitoring/cancer", "/ui/monitoring/quiet")

    assert page.text.count("/ui/monitoring/cancer/columns/") == 7
    slos = page.text.split('id="slos"')[1].split("</table>")[0]
    rows = re.findall(r'<tr class="slo ([\w-]+)"><td>([\w-]+)</td>', slos)
    assert sorted(name for _, name in rows) == ["cancer-busy", "cancer-errors", "cancer-p99"]
    assert dict((n, s) for s, n in rows)["cancer-errors"] == "met"
    assert "<td>&lt;= 0.5</td>" in slos  # the target is the alert condition's opposite
    alerts = page.text.split('id="model-alerts"')[1].split("</table>")[0]
    states = re.findall(r'<tr class="(firing|resolved)"><td[^>]*>\w+</td><td>([\w-]+)', alerts)
    assert states == [("firing", "cancer-p99"), ("resolved", "cancer-busy")]
    assert "no SLO declared for quiet" in quiet.text


def test_the_report_of_a_replayed_calendar_shows_its_newest_window(tmp_path: Path) -> None:
    """A pipeline that replayed past days logged its scores at their times, weeks ago: the
    report's default window (the last day) holds none, so it ends at the newest instead."""
    from modelyard.serving import score

    ws = modelyard.Workspace.init(tmp_path / "ws", environ={})
    lower_minimums(ws, rows=1)
    rows = pd.DataFrame({"a": [float(i) for i in range(50)]})
    with ws.start_run("trained") as run:
        logged = ws.registry.log_model(run, doubler(), input_example=rows, reference_data=rows)
    for name in ("replayed", "silent"):
        ws.registry.set_alias(name, "production", ws.registry.register(name, logged).version)
    rows.to_parquet(tmp_path / "day.parquet")
    then = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) - timedelta(days=40)
    score(
        ws.registry, "replayed@production", tmp_path / "day.parquet", tmp_path / "out.parquet",
        prediction_log=ws.predictions, logged_at=then, keep_input=False,
    )  # fmt: skip

    default, nav, silent = get(
        ws,
        "/ui/monitoring/replayed/report",
        "/ui/monitoring/replayed/report?window=1d&alias=production",  # the pages' link
        "/ui/monitoring/silent/report",
    )
    ws.close()

    for page in (default, nav):
        assert page.status_code == 200, page.text[-500:]
        note = page.text.split('id="window-note">')[1].split("</p>")[0]
        end = then.replace(minute=0) + timedelta(hours=1)
        assert note.startswith("no predictions of replayed/1 in the last 1d (to "), note
        assert f"showing the 1d to {end:%Y-%m-%d %H:%M} UTC, which holds its newest" in note
        assert f"{end - timedelta(days=1):%Y-%m-%dT%H:%M}" in page.text  # the window shown
        assert "50 rows against 50 reference rows" in page.text
        hour = f"<tr><td>{then:%Y-%m-%dT%H}:00:00+00:00</td><td>50</td><td>0</td><td></td>"
        assert hour in page.text  # batch-scored rows: volume, no request latency
    assert silent.status_code == 200
    assert "no predictions of silent/1 are logged" in silent.text


def test_bars_thin_turned_labels_and_label_numeric_edges_roundly() -> None:
    many = [f"category number {i}" for i in range(80)]
    svg = bars("many", many, [("reference", [1 / 80] * 80), ("current", [1 / 80] * 80)])
    positions = [x for x, _ in xticks(svg)]
    assert 0 < len(positions) < 80
    assert min(b - a for a, b in zip(positions, positions[1:], strict=False)) >= 16
    edges = [0.1234567, 1.2345678, 2.3456789]
    numeric = bars("n", ["a", "b", "c", "d"], [("reference", [0.25] * 4)], edges=edges)
    assert [t for _, t in xticks(numeric)] == ["0.123", "1.23", "2.35"]
    close = bars("c", list("abcde"), [("r", [0.2] * 5)], edges=[12.01, 12.04, 150.6, 2500.2])
    assert [t for _, t in xticks(close)] == ["12.01", "12.04", "151", "2500"]
