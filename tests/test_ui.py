"""The dashboard's pages in process (httpx's ASGI transport): what they show, how they
escape user text, and how they answer a bad filter or an unknown run or model. The same
pages in a real browser: tests/test_ui_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import modelyard
from cli_support import run_cli
from modelyard.ui._charts import Series, lines, ticks
from registry_support import doubler
from ui_support import get

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelyard.Workspace]:
    ws = modelyard.Workspace.init(tmp_path_factory.mktemp("ui") / "ws", environ={})
    for i in range(3):
        with ws.start_run(f"run-{i}", params={"C": 0.1 * (i + 1), "note": HOSTILE}) as run:
            for step in range(4):
                run.log_metric("loss", 1.0 / (step + 1 + i), step=step)
            run.log_metric("accuracy", 0.8 + 0.05 * i)
            logged = ws.registry.log_model(run, doubler(), input_example=pd.DataFrame({"a": [1.0]}))
        ws.registry.set_alias("churn", "production", ws.registry.register("churn", logged).version)
    try:
        yield ws
    finally:
        ws.close()


def test_the_runs_page_filters_with_the_search_language(ws: modelyard.Workspace) -> None:
    everything, better, bad = get(
        ws, "/ui/runs", "/ui/runs?filter=metrics.accuracy > 0.82", "/ui/runs?filter=oops >"
    )
    assert everything.status_code == 200 and everything.text.count('name="run"') == 3
    assert better.text.count('name="run"') == 2 and "run-0" not in better.text
    assert bad.status_code == 200 and 'role="alert"' in bad.text


def test_user_text_is_escaped_everywhere(ws: modelyard.Workspace) -> None:
    ids = [r.run_id for r in ws.runs.search(None)]
    pages = get(
        ws,
        "/ui/runs",
        f"/ui/runs/{ids[0]}",
        f"/ui/runs/compare?run={ids[0]}&run={ids[1]}",
        f"/ui/runs?filter={HOSTILE}",
        f"/ui/models/{HOSTILE}",
    )
    for page in pages:
        assert HOSTILE not in page.text
    assert "&lt;script&gt;" in pages[0].text


def test_compare_takes_two_to_five_runs(ws: modelyard.Workspace) -> None:
    ids = [r.run_id for r in ws.runs.search(None)]
    one, three, unknown = get(
        ws,
        f"/ui/runs/compare?run={ids[0]}",
        "/ui/runs/compare?" + "&".join(f"run={i}" for i in ids),
        f"/ui/runs/compare?run={ids[0]}&run=nope",
    )
    assert one.status_code == 400 and "pick 2 to 5 runs" in one.text
    assert three.status_code == 200 and three.text.count("<svg") >= 2
    assert unknown.status_code == 404


def test_the_model_page_shows_versions_aliases_and_history(ws: modelyard.Workspace) -> None:
    listing, model, missing = get(ws, "/ui/models", "/ui/models/churn", "/ui/models/nope")
    assert "churn" in listing.text and "production → 3" in listing.text
    assert model.text.count("<tr>") >= 3 and "churn@production" in model.text
    assert missing.status_code == 404 and "not registered" in missing.text


def test_chart_ticks_are_round_and_cover_the_range() -> None:
    assert ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert ticks(3.0, 3.0) == [3.0]
    svg = lines("loss", [Series("a", [(0, 1.0), (1, 0.5)]), Series("b", [])])
    assert "<polyline" in svg and "no data" not in svg
    assert "no data" in lines("empty", [Series("a", [])])


def test_the_ui_command_listens_on_loopback_only(
    ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "ui", "--host", "0.0.0.0", "-w", str(ws.root))
    assert code == 2 and "loopback only" in err


def test_the_ui_needs_a_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "ui", "-w", str(tmp_path / "typo"))
    assert code == 2 and "no modelyard workspace" in err


def test_the_jobs_page_lists_runs_and_shows_a_runs_log(ws: modelyard.Workspace) -> None:
    from datetime import UTC, datetime

    from modelyard.jobs import JobHistory

    history = JobHistory(ws.metadata)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    history.start_run("r" * 32, "nightly", day, "schedule", "test")
    history.end_run("r" * 32, "failed", f"boom {HOSTILE}", f"line one\n{HOSTILE}\n")
    listing, run, missing = get(ws, "/ui/jobs", f"/ui/jobs/runs/{'r' * 8}", "/ui/jobs/runs/zz")
    assert "nightly" in listing.text and "failed" in listing.text
    assert HOSTILE not in listing.text + run.text
    assert "line one" in run.text and "&lt;script&gt;" in run.text
    assert missing.status_code == 404


def test_the_features_page_lists_definitions_and_freshness(ws: modelyard.Workspace) -> None:
    from modelyard.features import Entity, FeatureView, FrameSource

    frame = pd.DataFrame(
        {
            "driver_id": [1, 2],
            "trips": [3, 4],
            "event_timestamp": pd.to_datetime(["2026-12-01", "2026-12-02"], utc=True),
        }
    )
    driver = Entity("driver", {"driver_id": "int64"})
    view = FeatureView(
        "driver_stats", entity=driver, source=FrameSource(frame), features={"trips": "int64"}
    )
    ws.features.apply([driver, view])
    (before,) = get(ws, "/ui/features")
    assert "driver_stats" in before.text and "never materialized" in before.text
    ws.features.materialize(
        pd.Timestamp("2026-11-30", tz="UTC").to_pydatetime(),
        pd.Timestamp("2026-12-03", tz="UTC").to_pydatetime(),
    )
    after, searched, none = get(ws, "/ui/features", "/ui/features?q=stats", "/ui/features?q=zzz")
    assert "never materialized" not in after.text.split("driver_stats")[1][:300]
    assert "driver_stats" in searched.text and "driver_stats" not in none.text


def test_the_monitoring_page_charts_recorded_drift_and_quality(ws: modelyard.Workspace) -> None:
    from datetime import UTC, datetime, timedelta

    from modelyard.monitoring import record_metrics

    now = datetime.now(UTC)
    for day in range(5):
        record_metrics(
            ws.metadata,
            "churn",
            {"drift.psi.tenure": 0.05 * day, "drift.share": 0.1 * day, "quality.roc_auc": 0.9},
            window=timedelta(days=1),
            version=3,
            at=now - timedelta(days=5 - day),
        )
    page, overview, narrow, bad, other = get(
        ws,
        "/ui/monitoring/churn",
        "/ui/monitoring",
        "/ui/monitoring/churn?window=1h",
        "/ui/monitoring/churn?window=soon",
        "/ui/monitoring/unknown",
    )
    assert page.status_code == 200 and page.text.count("<svg") == 3
    assert "tenure" in page.text and "<polyline" in page.text
    assert "churn" in overview.text and "no rule checked yet" in overview.text
    assert "nothing recorded" in narrow.text
    assert bad.status_code == 400 and "not a duration" in bad.text
    assert other.status_code == 404 and "not registered" in other.text


def test_the_model_page_shows_release_records_with_their_gates(ws: modelyard.Workspace) -> None:
    from modelyard.release import record

    gates = [
        {"gate": "roc_auc >= champion.roc_auc - 0.005", "passed": False, "value": 0.81},
        {"gate": "p99_ms <= 50", "passed": True, "value": 12.5},
    ]
    record(
        ws.metadata, model="churn", action="check", actor="ci", alias="production",
        from_version=2, to_version=3, passed=False, reason="a gate failed",
        details={"gates": gates},
    )  # fmt: skip
    (page,) = get(ws, "/ui/models/churn")
    releases = page.text.split('id="releases"')[1]
    assert "a gate failed" in releases and "p99_ms &lt;= 50" in releases
    assert "<strong>no</strong>" in releases
