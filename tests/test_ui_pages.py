"""The dashboard's runs, models, jobs and features pages in process (httpx's ASGI
transport), over one workspace built with the real APIs: experiments and sorting, a
model version's metrics, signature, resource use and lineage chain, a job's SLA miss,
a running job's log followed by offset, feature definitions with a real backfill, and
user text escaped everywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest

import modelyard
from registry_support import doubler
from ui_support import get

HOSTILE = "<script>alert(1)</script>"
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)

PIPELINES = f"""
def hourly(ctx):
    print("loading", ctx.logical_date)
    raise RuntimeError({HOSTILE!r})
"""

CONFIG = """
[alerts.sinks.pager]
type = "file"
path = "alerts.jsonl"

[jobs.hourly]
function = "pipelines:hourly"
schedule = "0 * * * *"
sla = "30m"
sinks = ["pager"]
"""


def _features(ws: modelyard.Workspace, root: Path) -> None:
    from modelyard.features import Entity, FeatureService, FeatureView, FileSource, Range

    rows = [(d, driver) for d in range(3) for driver in (1, 2)]
    pd.DataFrame(
        {
            "driver_id": [driver for _, driver in rows],
            "event_timestamp": [DAY0 + timedelta(days=d, hours=12) for d, _ in rows],
            "trips": [99 if d == 2 else d + driver for d, driver in rows],  # day 2 fails
        }
    ).to_parquet(root / "trips.parquet")
    driver = Entity("driver", {"driver_id": "int64"}, description=HOSTILE)
    view = FeatureView(
        "driver_stats",
        entity=driver,
        source=FileSource(str(root / "trips.parquet")),
        features={"trips": "int64"},
        ttl=timedelta(days=2),
        owner="team-rides",
        tags={"tier": HOSTILE},
        checks=(Range("trips", 0, 10),),
    )
    ws.features.apply([driver, view, FeatureService("driver_service", [view])])
    report = ws.features.backfill("driver_stats", DAY0, DAY0 + timedelta(days=3))
    assert [p.status for p in report.partitions] == ["written", "written", "rejected"]


def _runs(ws: modelyard.Workspace) -> None:
    from modelyard.registry import FeatureBinding

    for i, (experiment, accuracy) in enumerate(
        [("exp-a", 0.7), ("exp-a", 0.9), (HOSTILE, 0.8), ("exp-b", 0.75)]
    ):
        with ws.start_run(f"run-{i}", experiment=experiment, params={"note": HOSTILE}) as run:
            run.log_metric("accuracy", accuracy)
            if i == 1:
                run.log_dataset("train", pd.DataFrame({"a": [1.0, 2.0], "y": [2.0, 4.0]}))
                logged = ws.registry.log_model(
                    run, doubler(), input_example=pd.DataFrame({"a": [1.0]})
                )
    binding = FeatureBinding("driver_service")
    ws.registry.register("churn", logged, description=HOSTILE, features=binding)


def _jobs(ws: modelyard.Workspace) -> None:
    """The 04:00 slot fails at 05:10; at 05:40 (its SLA of 30 min after 05:00 passed)
    the scheduler records the miss."""
    from modelyard.jobs import Scheduler, open_runner, wait_all, workspace_jobs

    now = [datetime(2026, 11, 24, 5, 10, tzinfo=UTC)]
    with open_runner(ws, owner="ui-test", sleep=lambda _: None) as runner:
        sched = Scheduler(workspace_jobs(ws), runner, clock=lambda: now[0])
        (run,) = wait_all(sched.tick())
        assert run.status == "failed"
        now[0] = datetime(2026, 11, 24, 5, 40, tzinfo=UTC)
        sched.tick()
        sched.close()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelyard.Workspace]:
    root = tmp_path_factory.mktemp("ui-pages") / "ws"
    modelyard.Workspace.init(root, environ={}).close()
    (root / "pipelines.py").write_text(PIPELINES)
    with open(root / "modelyard.toml", "a") as f:
        f.write(CONFIG)
    ws = modelyard.Workspace(root, environ={})
    try:
        _features(ws, root)
        _runs(ws)
        _jobs(ws)
        yield ws
    finally:
        ws.close()


def names_in_order(page: str) -> list[str]:
    table = page.split('id="runs"')[1]
    return [part.split("<")[0] for part in table.split('">run-')[1:]]


def test_experiments_are_listed_with_counts_and_filter_the_runs(ws: modelyard.Workspace) -> None:
    (page,) = get(ws, "/ui/runs")
    experiments = page.text.split('id="experiments"')[1].split("</table>")[0]
    assert 'href="/ui/runs?experiment=exp-a">exp-a</a>' in experiments
    row = experiments.split("exp-a</a>")[1]
    assert '<td class="num">2</td>' in row.split("</tr>")[0]
    hostile_link = f"/ui/runs?experiment={quote(HOSTILE)}"
    assert hostile_link in experiments and HOSTILE not in experiments
    only_a, hostile = get(ws, "/ui/runs?experiment=exp-a", hostile_link)
    assert sorted(names_in_order(only_a.text)) == ["0", "1"]
    assert names_in_order(hostile.text) == ["2"]


def test_a_metric_header_sorts_the_runs_and_toggles(ws: modelyard.Workspace) -> None:
    (page,) = get(ws, "/ui/runs")
    header = "/ui/runs?order=metrics.accuracy+DESC"
    assert f'href="{header}"' in page.text
    (down,) = get(ws, header)
    assert names_in_order(down.text) == ["1", "2", "3", "0"]  # 0.9, 0.8, 0.75, 0.7
    assert 'href="/ui/runs?order=metrics.accuracy+ASC"' in down.text and "▼" in down.text
    (up,) = get(ws, "/ui/runs?experiment=exp-a&order=metrics.accuracy+ASC")
    assert names_in_order(up.text) == ["0", "1"]
    assert "experiment=exp-a&amp;order=metrics.accuracy+DESC" in up.text  # keeps the filter


def test_compare_marks_the_rows_that_differ(ws: modelyard.Workspace) -> None:
    ids = [r.run_id for r in ws.runs.search(None, order_by="name ASC")]
    (page,) = get(ws, f"/ui/runs/compare?run={ids[0]}&run={ids[1]}")
    params, metrics = page.text.split('id="params"')[1], page.text.split('id="metrics"')[1]
    assert "<tr><th>note</th>" in params  # equal in both: not marked
    assert '<tr class="differs"><th>accuracy</th>' in metrics


def test_a_model_version_shows_metrics_signature_resources_and_lineage(
    ws: modelyard.Workspace,
) -> None:
    (page,) = get(ws, "/ui/models/churn")
    version = page.text.split('id="version-1"')[1]
    run = ws.runs.search("name = 'run-1'")[0]
    lineage = version.split('class="lineage"')[1].split("</ol>")[0]
    assert f'href="/ui/runs/{run.run_id}">run-1</a>' in lineage
    assert run.datasets[0]["fingerprint"][:19] in lineage and "2 rows" in lineage
    assert 'href="/ui/features?q=driver_service#service-driver_service">driver_service' in lineage
    assert 'href="/ui/features?q=driver_stats#view-driver_stats">driver_stats</a>' in lineage
    metrics = version.split('class="metrics"')[1].split("</table>")[0]
    assert "<th>accuracy</th>" in metrics and "0.9" in metrics
    signature = version.split('class="signature"')[1].split("</table>")[0]
    assert "<td>a</td><td><code>float64</code>" in signature and ">output<" in signature
    resources = version.split('class="resources"')[1].split("</table>")[0]
    (artifact,) = [a for a in run.artifacts if a["kind"] == "model"]
    assert f"{artifact['size']} B" in resources and "<th>python</th>" in resources
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text


def test_a_job_that_missed_its_sla_shows_the_miss_and_a_late_run(
    ws: modelyard.Workspace,
) -> None:
    (page,) = get(ws, "/ui/jobs")
    row = page.text.split('id="jobs"')[1].split("</tr>")[1]
    assert "hourly" in row and "1 missed" in row and "2026-11-24 04:00:00" in row
    assert "has not succeeded for 2026-11-24T04:00:00 by its SLA deadline" in row
    assert "1 of the last 1" in row  # failures
    recent = page.text.split('id="job-runs"')[1]
    assert '<tr class="failed late">' in recent
    assert HOSTILE not in page.text


def test_the_log_endpoint_follows_a_running_job(ws: modelyard.Workspace) -> None:
    from modelyard.jobs import JobHistory
    from modelyard.jobs._logs import log_dir

    history = JobHistory(ws.metadata)
    run_id = "f" * 32
    history.start_run(run_id, "follow", DAY0, "manual", "ui-test")
    path = log_dir(ws) / f"{run_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"one\n{HOSTILE}\npart")
    url = f"/ui/jobs/runs/{run_id}/log"
    page, first, again = get(ws, f"/ui/jobs/runs/{run_id}", f"{url}?offset=0", f"{url}?offset=4")
    assert f'data-follow="{url}" data-offset="{len(first.json()["text"])}"' in page.text
    assert '<script src="/ui/static/job_log.js" defer></script>' in page.text
    assert HOSTILE not in page.text and "part" not in page.text  # whole lines only
    body = first.json()
    assert body["text"] == f"one\n{HOSTILE}\n" and body["offset"] == len(body["text"])
    assert body["finished"] is False and body["status"] == "running"
    assert again.json()["text"] == f"{HOSTILE}\n"
    with open(path, "a") as f:
        f.write("ial\ntwo\n")
    (more,) = get(ws, f"{url}?offset={body['offset']}")
    assert more.json()["text"] == "partial\ntwo\n" and more.json()["finished"] is False
    history.end_run(run_id, "success", None, path.read_text())
    done, missing, script = get(
        ws, f"{url}?offset=0", "/ui/jobs/runs/zz/log", "/ui/static/job_log.js"
    )
    assert done.json()["finished"] is True and done.json()["status"] == "success"
    assert done.json()["text"].endswith("partial\ntwo\n")
    assert missing.status_code == 404 and "no job run" in missing.json()["error"]
    assert script.status_code == 200 and "createTextNode" in script.text
    (ended,) = get(ws, f"/ui/jobs/runs/{run_id}")
    assert "data-follow" not in ended.text and "job_log.js" not in ended.text


def test_the_features_page_shows_definitions_owners_and_backfill_checks(
    ws: modelyard.Workspace,
) -> None:
    page, searched, services_only, none = get(
        ws, "/ui/features", "/ui/features?q=STATS", "/ui/features?q=service", "/ui/features?q=zzz"
    )
    entities = page.text.split('id="entities"')[1].split("</table>")[0]
    assert "driver_id <span" in entities and "int64" in entities
    views = page.text.split('id="views"')[1].split("</table>")[0]
    assert "team-rides" in views and "trips <span" in views and "2 days" in views
    assert "range(feature=trips, min=0, max=10)" in views and "trips.parquet" in views
    assert "2026-03-01 00:00:00 – 2026-03-03 00:00:00" in views  # days 0-1 passed; 2 failed
    assert "rejected 2026-03-03: range(trips)" in views  # the last run's failing check
    assert "read from nowhere until a backfill passes" in views
    assert "never materialized" in views
    services = page.text.split('id="services"')[1].split("</table>")[0]
    assert "driver_stats</a>" in services and "team-rides" in services
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
    assert 'id="views"' in searched.text and 'id="services"' not in searched.text
    assert 'id="services"' in services_only.text and 'id="views"' not in services_only.text
    assert "driver" not in none.text.split("<main>")[1].split("</form>")[1]


def test_hostile_text_is_escaped_on_every_page(ws: modelyard.Workspace) -> None:
    ids = [r.run_id for r in ws.runs.search(None)]
    (job_run,) = [r.run_id for r in _job_runs(ws) if r.job == "hourly"]
    pages = get(
        ws,
        "/ui/runs",
        f"/ui/runs?experiment={quote(HOSTILE)}",
        f"/ui/runs?order={quote(HOSTILE)}",
        f"/ui/runs/compare?run={ids[0]}&run={ids[1]}",
        "/ui/models/churn",
        "/ui/jobs",
        f"/ui/jobs/runs/{job_run}",
        f"/ui/features?q={quote(HOSTILE)}",
    )
    for page in pages:
        assert page.status_code == 200 and HOSTILE not in page.text, page.url
    assert "&lt;script&gt;" in pages[-2].text  # the job's error


def _job_runs(ws: modelyard.Workspace) -> list[Any]:
    from modelyard.jobs import JobHistory

    return JobHistory(ws.metadata).runs(None)


def test_the_log_answer_is_json_with_what_the_script_reads(ws: modelyard.Workspace) -> None:
    (run,) = [r for r in _job_runs(ws) if r.job == "hourly"]
    (answer,) = get(ws, f"/ui/jobs/runs/{run.run_id}/log?offset=0")
    body = json.loads(answer.text)
    assert set(body) == {"text", "offset", "finished", "status", "ended", "error"}
    assert answer.headers["cache-control"] == "no-store" and body["status"] == "failed"
