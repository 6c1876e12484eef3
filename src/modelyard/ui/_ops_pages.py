"""The dashboard's jobs and features pages: schedules, runs and their logs; feature
definitions and how fresh their online copies are. Read through the functions the
command line calls (``workspace_jobs``, ``JobHistory``, ``run_log``, ``ws.features``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from modelyard.errors import ModelyardError
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

RECENT_RUNS = 50


def ops_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/jobs")
    def jobs() -> Response:
        from modelyard.jobs import JobHistory, workspace_jobs

        specs = workspace_jobs(ws)
        history = JobHistory(ws.metadata)
        now = datetime.now(UTC)
        rows = []
        for spec in specs.values():
            last = history.runs(spec.name, limit=1)
            rows.append(
                {
                    "name": spec.name,
                    "schedule": spec.schedule.cron if spec.schedule else "(manual)",
                    "next": spec.schedule.next_after(now) if spec.schedule else None,
                    "last": last[0] if last else None,
                    "retries": spec.retries,
                    "sla_s": spec.sla_s,
                }
            )
        recent = history.runs(None, limit=RECENT_RUNS)
        return HTMLResponse(render("jobs.html", title="Jobs", jobs=rows, runs=recent))

    @router.get("/jobs/runs/{run_id}")
    def job_run(run_id: str) -> Response:
        from modelyard.jobs import JobHistory, find_run, run_log

        try:
            run = find_run(JobHistory(ws.metadata), run_id)
        except ModelyardError as exc:
            return HTMLResponse(render("error.html", title="Not found", message=exc.message), 404)
        return HTMLResponse(
            render("job_run.html", title=f"Job run {run.run_id[:8]}", run=run, log=run_log(ws, run))
        )

    @router.get("/features")
    def features(q: str = "") -> Response:
        try:
            store = ws.features
            found = [d for d in store.list() if q.lower() in d[1].lower()]
        except ModelyardError as exc:  # the features extra (DuckDB) is not installed, say
            return HTMLResponse(render("error.html", title="Features", message=exc.message))
        rows: list[dict[str, Any]] = []
        for kind, name, version in sorted(found):
            fresh: dict[str, Any] = {}
            if kind == "view":
                try:
                    fresh = store.watermarks(name)
                except ModelyardError as exc:  # the online store is down: say so, go on
                    fresh = {name: exc.message}
            rows.append({"kind": kind, "name": name, "version": version, "fresh": fresh})
        return HTMLResponse(render("features.html", title="Features", rows=rows, q=q))

    return router
