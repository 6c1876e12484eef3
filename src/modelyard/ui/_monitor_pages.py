"""The dashboard's monitoring pages: a model's recorded drift, quality and SLO values over
time (what ``monitor drift``, ``monitor check`` and the scheduler record), its SLOs and
alerts, and every alert rule's state and notifications. Read through ``metric_history``,
``alert_states`` and ``alert_history``, as ``modelyard monitor history|alerts`` do.

Below a model: one page per input column (reference vs current histogram,
``_monitor_columns.py``) and a quality page (confusion matrix, ROC and PR curves,
``_monitor_quality.py``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from modelyard._time import parse_duration
from modelyard.errors import ModelyardError
from modelyard.ui import _charts
from modelyard.ui._errors import page_of
from modelyard.ui._monitor_columns import column_picker, column_view
from modelyard.ui._monitor_quality import quality_view
from modelyard.ui._monitor_slo import model_alerts, rules_of, slo_rows
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

TOP_COLUMNS = 7  # drift lines on one chart: the columns with the highest PSI, no more
# The charts of recorded values, one per unit, in page order: (title, y axis title).
DRIFT, SHARE = ("Drift per column (PSI)", "PSI"), ("Share of drifted columns", "share")
QUALITY, LABELLED = ("Quality", "score"), ("Labelled rows", "rows")
LATENCY, ERRORS = ("Latency", "ms"), ("Error rates", "share of requests")
TRAFFIC, FRESHNESS = ("Traffic", "requests or rows"), ("Feature freshness", "seconds")
OTHER = ("Other service levels", "")
CHARTS = (DRIFT, SHARE, QUALITY, LABELLED, LATENCY, ERRORS, TRAFFIC, FRESHNESS, OTHER)
# What monitor check records under ``slo.`` (monitoring.SLO_METRICS), by unit.
SLO_CHARTS = {
    "latency_p50_ms": LATENCY,
    "latency_p99_ms": LATENCY,
    "error_rate": ERRORS,
    "client_error_rate": ERRORS,
    "requests": TRAFFIC,
    "volume": TRAFFIC,
    "feature_freshness_s": FRESHNESS,
}


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
    def model_page(model: str, window: str = "30d", alias: str | None = None) -> Response:
        """A model's recorded values, SLOs and alerts. An alias the address names must
        exist (404, as on the quality page); without one, @production is shown, set or not,
        since the recorded values are the model's whatever its aliases."""
        from modelyard.monitoring import metric_history

        try:
            since = datetime.now(UTC) - parse_duration(window, "window")
            ws.registry.versions(model)  # 404 for a model that is not registered
            if alias is not None:
                ws.registry.get(f"{model}@{alias}")  # 404 for an alias it does not have
        except ModelyardError as exc:
            return page_of(exc)
        alias = alias or "production"
        rows = metric_history(ws.metadata, model, since=since, limit=20_000)
        charts = history_charts(rows)
        columns, columns_note = column_picker(ws, f"{model}@{alias}")
        rules, rules_note = rules_of(ws, model)
        return HTMLResponse(
            render(
                "monitor_model.html",
                title=f"Monitoring {model}",
                model=model,
                alias=alias,
                window=window,
                charts=charts,
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
            return page_of(exc)
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
            return page_of(exc)
        context = {"model": model, "alias": alias, "window": window}
        return HTMLResponse(render("monitor_quality.html", title=title, **context, **view))

    @router.get("/monitoring/{model}/report")
    def report(model: str, window: str = "1d", alias: str = "production") -> Response:
        """``modelyard monitor report`` as a page: the same function, the same HTML.

        The window ends now if it holds traffic, else at the version's newest logged row
        (a replayed calendar's days lie in the past), and the page says so."""
        from modelyard.monitoring import (
            SampleSize,
            build_report,
            newest_window_end,
            render_report,
        )

        now = datetime.now(UTC)
        try:
            span = parse_duration(window, "window")
            version = ws.registry.get(f"{model}@{alias}")
            until = newest_window_end(ws.predictions, version.name, version.version, span, now=now)
            if until is None:
                return HTMLResponse(
                    render(
                        "monitor_report_empty.html",
                        title=f"Monitoring {model}: report",
                        model=model,
                        alias=alias,
                        version=version.ref,
                    )
                )
            data = build_report(
                ws.registry, version.ref, ws.predictions, span, now=until,
                sample=SampleSize.of(ws.config),
            )  # fmt: skip
        except ModelyardError as exc:
            return page_of(exc)
        note = ""
        if until != now:
            note = (
                f"no predictions of {version.ref} in the last {window} (to {now:%Y-%m-%d %H:%M}"
                f" UTC); showing the {window} to {until:%Y-%m-%d %H:%M} UTC, which holds its newest"
            )
        back = f"/ui/monitoring/{quote(model, safe='')}?alias={quote(alias, safe='')}"
        return HTMLResponse(render_report({**data, "window": window}, back=back, note=note))

    return router


def history_charts(rows: list[dict[str, Any]]) -> list[Markup]:
    """A chart per unit of the recorded ``rows`` (oldest first), a line per metric, over
    time; the drift chart keeps the ``TOP_COLUMNS`` columns with the highest latest PSI."""
    by_chart: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in rows:
        metric = str(row["metric"])
        chart = _chart_of(metric)
        if row["value"] is None or chart is None:
            continue
        name = metric.removeprefix("drift.psi.") if chart == DRIFT else metric.split(".", 1)[1]
        by_chart[chart][name].append((row["at"].timestamp(), float(row["value"])))
    out = []
    for title, y_label in (c for c in CHARTS if c in by_chart):
        by_metric = by_chart[title, y_label]
        names = sorted(by_metric)
        if (title, y_label) == DRIFT:
            names = _top_psi(by_metric)
            if len(names) > TOP_COLUMNS:
                title = f"{title}: top {TOP_COLUMNS} of {len(names)} columns by latest PSI"
                names = names[:TOP_COLUMNS]
        series = [_charts.Series(name, by_metric[name]) for name in names]
        out.append(_charts.lines(title, series, "time (UTC)", y_label=y_label, time_axis=True))
    return out


def _chart_of(metric: str) -> tuple[str, str] | None:
    if metric.startswith("drift.psi."):
        return DRIFT
    if metric == "drift.share":
        return SHARE
    if metric == "quality.rows":
        return LABELLED
    if metric.startswith("quality."):
        return QUALITY
    if metric.startswith("slo."):
        return SLO_CHARTS.get(metric.removeprefix("slo."), OTHER)
    return None


def _top_psi(by_column: dict[str, list[tuple[float, float]]]) -> list[str]:
    """Columns by their latest PSI, highest first (then by their highest, then by name)."""

    def rank(name: str) -> tuple[float, float, str]:
        values = [v for _, v in by_column[name]]
        return -values[-1], -max(values), name

    return sorted(by_column, key=rank)


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:  # oldest first: later rows replace earlier ones
        newest[str(row["metric"])] = row
    return [newest[k] for k in sorted(newest)]
