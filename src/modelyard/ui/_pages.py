"""The dashboard's runs pages: experiments and runs (filter, sort by a column, compare),
and the entry point of the models pages (``_models_page.py``). Each page reads through
the same functions the command line calls (``ws.runs.search``, ``ws.runs.get``,
``ws.registry``), so the two never disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelyard.errors import ModelyardError
from modelyard.ui import _charts
from modelyard.ui._errors import error_page, page_of
from modelyard.ui._lineage_page import lineage_routes
from modelyard.ui._models_page import model_routes
from modelyard.ui._render import render
from modelyard.ui._runs_view import registered_from, sort_link

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

MAX_RUNS = 200
MAX_COMPARE = 5
MAX_CURVES = 8  # charts on a run's page
MAX_SCANNED = 40  # metrics whose history a run's page reads, looking for curves


def page_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/")
    async def home() -> Response:
        return RedirectResponse("/ui/runs", status_code=307)

    @router.get("/runs")
    def runs(request: Request, filter: str = "", order: str = "", experiment: str = "") -> Response:
        experiments = ws.runs.experiments()  # a database that is down fails here: 503
        error = None
        found: list[Any] = []
        try:
            found = ws.runs.search(
                filter or None,
                order_by=order or None,
                experiment=experiment or None,
                max_results=MAX_RUNS,
            )
        except ModelyardError as exc:
            if exc.status >= 500:
                raise  # not the query's fault: the error page says what is down
            error = exc.message  # shown above the form: the query is the user's to fix
        metric_keys = sorted({k for r in found for k in r.metrics})[:8]
        param_keys = sorted({k for r in found for k in r.params})[:6]
        where = {"order": order, "filter": filter, "experiment": experiment}
        sorts = {
            (kind, key): sort_link(kind, key, **where)
            for kind, keys in (("params", param_keys), ("metrics", metric_keys))
            for key in keys
        }
        sorts["attr", "start_time"] = sort_link("attr", "start_time", **where)
        html = render(
            "runs.html",
            title="Runs",
            runs=found,
            filter=filter,
            order=order,
            experiment=experiment,
            error=error,
            metric_keys=metric_keys,
            param_keys=param_keys,
            sorts=sorts,
            experiments=experiments,
            # A name no run was logged under: said plainly, not "Runs of NAME".
            unknown=bool(experiment) and all(e.name != experiment for e in experiments),
            limit=MAX_RUNS,
        )
        return HTMLResponse(html)  # the form shows the error: the page itself is fine

    @router.get("/runs/compare")
    def compare(run: list[str] = Query(default_factory=list)) -> Response:
        ids = list(dict.fromkeys(run))
        if not 2 <= len(ids) <= MAX_COMPARE:
            message = f"pick 2 to {MAX_COMPARE} runs to compare (got {len(ids)})"
            return error_page(message, 400)
        try:
            chosen = [ws.runs.get(i) for i in ids]
        except ModelyardError as exc:
            return page_of(exc)  # 404 for an unknown run, 503 for a database that is down
        params = sorted({k for r in chosen for k in r.params})
        metrics = sorted({k for r in chosen for k in r.metrics})
        # As ``runs compare`` highlights them: the rows whose values are not all equal.
        differ = {
            kind: {k for k in keys if len({getattr(r, kind).get(k) for r in chosen}) > 1}
            for kind, keys in (("params", params), ("metrics", metrics))
        }
        curves = []
        for key in metrics:
            series = [
                _charts.Series(r.name or r.run_id[:8], _curve(ws, r.run_id, key)) for r in chosen
            ]
            if any(len(s.points) > 1 for s in series):  # a curve, not one value per run
                curves.append(_charts.lines(key, series))
        scatters = []
        numeric = [
            k
            for k in params
            if all(_number(r.params.get(k)) is not None for r in chosen)
            and len({r.params.get(k) for r in chosen}) > 1  # a parameter that varies
        ]
        for key in numeric[:3]:
            for metric in metrics[:1]:
                series = [
                    _charts.Series(
                        r.name or r.run_id[:8],
                        [(_number(r.params[key]) or 0.0, r.metrics[metric] or 0.0)]
                        if r.metrics.get(metric) is not None
                        else [],
                    )
                    for r in chosen
                ]
                scatters.append(_charts.scatter(f"{metric} by {key}", series, key))
        html = render(
            "compare.html",
            title="Compare runs",
            runs=chosen,
            params=params,
            differ=differ,
            metrics=metrics,
            curves=curves,
            scatters=scatters,
        )
        return HTMLResponse(html)

    @router.get("/runs/{run_id}")
    def run_page(run_id: str) -> Response:
        try:
            run = ws.runs.get(run_id)
        except ModelyardError as exc:
            return page_of(exc)
        # A metric logged once is a value in the table above the charts, not a chart.
        curves = []
        for key in sorted(run.metrics)[:MAX_SCANNED]:
            points = _curve(ws, run_id, key)
            if len(points) > 1:
                y_label, x_label = _axes(key)
                series = [_charts.Series(y_label, points)]
                curves.append(_charts.lines(key, series, x_label, y_label=y_label))
            if len(curves) == MAX_CURVES:
                break
        registered, searched_all = registered_from(ws, run)
        html = render(
            "run.html",
            title=f"Run {run.name}",
            run=run,
            curves=curves,
            registered=registered,
            searched_all=searched_all,
        )
        return HTMLResponse(html)

    router.include_router(model_routes(ws))
    router.include_router(lineage_routes(ws))
    return router


def _axes(key: str) -> tuple[str, str]:
    """(y, x) axis titles of metric ``key``: ``cost_by_threshold_pct`` is a cost over the
    threshold (its steps); any other metric is drawn over its steps."""
    value, by, over = key.rpartition("_by_")
    if by and value and over:
        return value.replace("_", " "), over.replace("_", " ")
    return key, "step"


def _curve(ws: Workspace, run_id: str, key: str) -> list[tuple[float, float]]:
    """A run's metric ``key`` as (step, value) points, as ``ws.runs.history`` holds it."""
    return [(p.step, p.value) for p in ws.runs.history(run_id, key) if p.value is not None]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
