"""The dashboard's jobs pages: each job's schedule, recent runs, durations, failures and
SLA misses; one run's log, followed while the run runs.

Read through what ``modelyard jobs list|runs|logs`` call (``workspace_jobs``,
``JobHistory``, ``find_run``, ``run_log``). An SLA miss is what the scheduler records
(``Scheduler._check_sla``): the slot's ``sla_alerted`` mark, and a ``job.sla_missed``
alert under the rule ``job:NAME`` (``alert_history``). A run is marked late when it
ended, or is still running, after its slot's deadline (interval end + ``sla``), or when
its slot was alerted.

Following a log: the page shows the log so far (enough without JavaScript); while the
run runs, ``static/job_log.js`` polls ``/ui/jobs/runs/ID/log?offset=N`` for the text
after character N and appends it, until the answer says the run ended. While the run
runs, only whole lines are served, so a line (or a character) still being written is
never shown cut.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from modelyard import _time
from modelyard.errors import ModelyardError
from modelyard.ui._errors import page_of
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.jobs import JobRun, JobSpec
    from modelyard.workspace import Workspace

RECENT_RUNS = 50
PER_JOB = 20  # runs per job that its failures and durations are counted over
SHOWN = 5  # of which the newest are listed in the job's row
SLA_METRIC = "job.sla_missed"


def jobs_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/jobs")
    def jobs() -> Response:
        from modelyard.jobs import JobHistory, workspace_jobs
        from modelyard.monitoring import alert_history

        specs = workspace_jobs(ws)
        history = JobHistory(ws.metadata)
        now = datetime.now(UTC)
        rows = []
        alerted: dict[str, set[datetime]] = {}
        for spec in specs.values():
            alerted[spec.name] = {
                d
                for s in history.slots(spec.name)
                if s["sla_alerted"] and (d := _time.to_datetime(s["logical_date"])) is not None
            }
            runs = history.runs(spec.name, limit=PER_JOB)
            ended = [r.duration_s for r in runs if r.duration_s is not None]
            alerts = [
                a
                for a in alert_history(ws.metadata, rule=f"job:{spec.name}", limit=PER_JOB)
                if a["metric"] == SLA_METRIC
            ]
            rows.append(
                {
                    "spec": spec,
                    "schedule": spec.schedule.cron if spec.schedule else "(manual)",
                    "next": spec.schedule.next_after(now) if spec.schedule else None,
                    "runs": [(r, _late(r, spec, alerted[spec.name], now)) for r in runs[:SHOWN]],
                    "counted": len(runs),
                    "failures": sum(r.status in ("failed", "timeout") for r in runs),
                    "last_s": ended[0] if ended else None,
                    "mean_s": sum(ended) / len(ended) if ended else None,
                    "misses": len(alerted[spec.name]),
                    "last_miss": max(alerted[spec.name], default=None),
                    "last_alert": alerts[0] if alerts else None,
                }
            )
        recent = [
            (r, r.job in specs and _late(r, specs[r.job], alerted[r.job], now))
            for r in history.runs(None, limit=RECENT_RUNS)
        ]
        return HTMLResponse(render("jobs.html", title="Jobs", jobs=rows, runs=recent))

    @router.get("/jobs/runs/{run_id}")
    def job_run(run_id: str) -> Response:
        from modelyard.jobs import JobHistory, find_run

        try:
            run = find_run(JobHistory(ws.metadata), run_id)
        except ModelyardError as exc:
            return page_of(exc)  # 404 for an unknown run, 503 for a database that is down
        log = _log_so_far(ws, run)
        return HTMLResponse(
            render(
                "job_run.html",
                title=f"Job run {run.run_id[:8]}",
                run=run,
                log=log,
                offset=len(log),
                following=run.status == "running",
            )
        )

    @router.get("/jobs/runs/{run_id}/log")
    def job_run_log(run_id: str, offset: int = Query(0, ge=0)) -> Response:
        """``{"text", "offset", "finished", "status", "ended", "error"}``: the log after
        character ``offset``, where the next call starts, and whether the run ended."""
        from modelyard.jobs import JobHistory

        try:
            run = JobHistory(ws.metadata).run(run_id)
        except ModelyardError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        log = _log_so_far(ws, run)
        body = {
            "text": log[offset:],
            "offset": max(offset, len(log)),
            "finished": run.status != "running",
            "status": run.status,
            "ended": "" if run.ended_at is None else f"{run.ended_at:%Y-%m-%d %H:%M:%S}",
            "error": run.error or "",
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return router


def _log_so_far(ws: Workspace, run: JobRun) -> str:
    """``run_log``, cut after its last newline while the run runs (no half-written line)."""
    from modelyard.jobs import run_log

    log = run_log(ws, run)
    return log[: log.rfind("\n") + 1] if run.status == "running" else log


def _late(run: JobRun, spec: JobSpec, alerted: set[datetime], now: datetime) -> bool:
    """Whether ``run`` missed its slot's SLA deadline (interval end + ``spec.sla_s``): an
    SLA alert was sent for its slot, or a scheduled run ended after the deadline."""
    if spec.schedule is None or spec.sla_s is None:
        return False
    if run.logical_date in alerted:
        return True
    if run.trigger != "schedule":  # a backfill, a rerun, a replay: run after the fact
        return False
    deadline = spec.schedule.interval(run.logical_date)[1] + timedelta(seconds=spec.sla_s)
    return (run.ended_at or now) > deadline
