"""The dashboard's monitoring pages: a model's recorded drift, quality and SLO values over
time (what ``monitor drift``, ``monitor check`` and the scheduler record), its SLOs and
alerts, and every alert rule's state and notifications. Read through ``metric_history``,
``alert_states`` and ``alert_history``, as ``modelyard monitor history|alerts`` do.

Below a model: one page per input column (reference vs current histogram,
``_monitor_columns.py``) and a quality page (confusion matrix, ROC and PR curves,
``_monitor_quality.py``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from modelyard._time import parse_duration
from modelyard.errors import ModelyardError
from modelyard.ui import _charts
from modelyard.ui._monitor_columns import column_picker, column_view
from modelyard.ui._monitor_quality import quality_view
from modelyard.ui._monitor_slo import model_alerts, rules_of, slo_rows
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

# Metric families, each one chart: (title, prefix of the recorded metric names)
FAMILIES = (
    ("Drift per column (PSI)", "drift.psi."),
    ("Share of drifted columns", "drift.share"),
    ("Quality", "quality."),
    ("Latency and errors", "slo."),
)


def monitor_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/monitoring")
    def overview(window: str = "30d") -> Response:
        from modelyard.monitoring import alert_history, alert_states

        models = [m.name for m in ws.registry.list()]
        states = alert_states(ws.metadata)
        events = alert_history(ws.metadata, limit=50)
        return HTMLResponse(
            render(
                "monitoring.html",
                title="Monitoring",
                models=models,
                states=sorted(states.values(), key=lambda s: s["rule"]),
                events=events,
                window=window,
            )
        )

    @router.get("/monitoring/{model}")
    def model_page(model: str, window: str = "30d", alias: str = "production") -> Response:
        from modelyard.monitoring import metric_history

        try:
            since = datetime.now(UTC) - parse_duration(window, "window")
        except ModelyardError as exc:
            return HTMLResponse(render("error.html", title="Monitoring", message=exc.message), 400)
        rows = metric_history(ws.metadata, model, since=since, limit=20_000)
        charts = [_family_chart(title, prefix, rows, since) for title, prefix in FAMILIES]
        columns, columns_note = column_picker(ws, f"{model}@{alias}")
        rules, rules_note = rules_of(ws, model)
        return HTMLResponse(
            render(
                "monitor_model.html",
                title=f"Monitoring {model}",
                model=model,
                alias=alias,
                window=window,
                charts=[c for c in charts if c is not None],
                latest=_latest(rows),
                empty=not rows,
                columns=columns,
                columns_note=columns_note,
                slos=slo_rows(ws, rules),
                rules_note=rules_note,
                alerts=model_alerts(ws, model, rules),
            )
        )

    @router.get("/monitoring/{model}/columns/{column:path}")
    def column_page(
        model: str, column: str, window: str = "1d", alias: str = "production"
    ) -> Response:
        """One input column: the reference histogram against the window's traffic."""
        title = f"Monitoring {model}: {column}"
        try:
            span = parse_duration(window, "window")
            view = column_view(ws, model, column, alias=alias, window=window, span=span)
        except ModelyardError as exc:
            page = render("error.html", title=title, message=exc.message)
            return HTMLResponse(page, 404 if exc.status == 404 else 400)
        context = {"model": model, "column": column, "alias": alias, "window": window}
        return HTMLResponse(render("monitor_column.html", title=title, **context, **view))

    @router.get("/monitoring/{model}/quality")
    def quality_page(model: str, window: str = "7d", alias: str = "production") -> Response:
        """Quality of labelled predictions: scores, confusion matrix, ROC and PR curves."""
        title = f"Monitoring {model}: quality"
        try:
            span = parse_duration(window, "window")
            view = quality_view(ws, model, alias=alias, window=window, span=span)
        except ModelyardError as exc:
            page = render("error.html", title=title, message=exc.message)
            return HTMLResponse(page, 404 if exc.status == 404 else 400)
        context = {"model": model, "alias": alias, "window": window}
        return HTMLResponse(render("monitor_quality.html", title=title, **context, **view))

    @router.get("/monitoring/{model}/report")
    def report(model: str, window: str = "1d", alias: str = "production") -> Response:
        """``modelyard monitor report`` as a page: the same function, the same HTML."""
        from modelyard.monitoring import SampleSize, build_report, render_report

        try:
            span = parse_duration(window, "window")
            data = build_report(
                ws.registry, f"{model}@{alias}", ws.predictions, span,
                sample=SampleSize.of(ws.config),
            )  # fmt: skip
        except ModelyardError as exc:
            page = render("error.html", title="Report", message=exc.message)
            return HTMLResponse(page, 404 if exc.status == 404 else 400)
        return HTMLResponse(render_report({**data, "window": window}))

    return router


def _family_chart(
    title: str, prefix: str, rows: list[dict[str, Any]], since: datetime
) -> Markup | None:
    by_metric: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        metric = str(row["metric"])
        if row["value"] is None or not metric.startswith(prefix):
            continue
        hours = (row["at"] - since) / timedelta(hours=1)
        by_metric[metric.removeprefix(prefix) or metric].append((hours, float(row["value"])))
    if not by_metric:
        return None
    series = [_charts.Series(name, points) for name, points in sorted(by_metric.items())][:7]
    return _charts.lines(title, series, x_label=f"hours since {since:%Y-%m-%d %H:%M} UTC")


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:  # oldest first: later rows replace earlier ones
        newest[str(row["metric"])] = row
    return [newest[k] for k in sorted(newest)]
