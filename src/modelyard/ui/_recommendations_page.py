"""The dashboard's recommendations page: ``/ui/recommendations[?model=M][&night=N]``.

For each model whose nightly job ran (the recommendations blueprint's, or any job that
records its nights the same way): the night readers see now and the one kept for
rollback (``serving.RecommendationLists.current``, as ``modelyard recommendations status``
reads it), every night newest first with its verdict and each bias check's value against
its threshold, the checks over the nights with their thresholds drawn, one night's
exposure per genre (``?night=``, by default the live one) with the checked genres that
breach drawn red, and the holdout evaluation of ALS against the popularity baseline.

A night is a run of experiment ``recommendations`` tagged ``recommendations.night``
(its model, verdict and published night in other tags, its checks in ``bias.json``);
the holdout is the newest run named ``holdout evaluation``. Everything is read through
``ws.runs`` and the run's artifacts, never the blueprint's modules (the same layer).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape

from modelyard.errors import ModelyardError
from modelyard.ui import _charts
from modelyard.ui._chart_frame import COLORS
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.serving import Publication
    from modelyard.tracking import RunInfo
    from modelyard.workspace import Workspace

EXPERIMENT = "recommendations"
HOLDOUT = "holdout evaluation"
MODEL_TAG, NIGHT_TAG = "recommendations.model", "recommendations.night"
VERDICT_TAG, PUBLISHED_TAG = "recommendations.verdict", "recommendations.published"
MAX_NIGHTS = 120  # runs read, newest first: about four months of nights for one model
CHECKS = {
    "popularity_lift": "popularity lift",
    "coverage": "coverage",
    "group_exposure": "group exposure",
}
HOLDOUT_METRICS = {
    "precision@10": "precision_at_10",
    "recall@10": "recall_at_10",
    "NDCG@10": "ndcg_at_10",
    "coverage": "coverage",
}
OFF_CHART = 5.0  # a bound this many times above every value is named, not drawn
BREACH = "#b91c1c"
_NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")


def recommendations_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/recommendations")
    def recommendations(model: str = "", night: str = "", run: str = "") -> Response:
        # A database that is down fails here: the error page says what is down.
        nights = ws.runs.search(
            f"tags.`{NIGHT_TAG}` != ''", experiment=EXPERIMENT, max_results=MAX_NIGHTS
        )
        holdouts = ws.runs.search(f"name = '{HOLDOUT}'", experiment=EXPERIMENT, max_results=20)
        runs: dict[str, list[RunInfo]] = {}
        for found in nights:
            runs.setdefault(found.tags.get(MODEL_TAG, ""), []).append(found)
        newest: dict[str, RunInfo] = {}
        for found in holdouts:  # newest first: the first of each model is its latest
            newest.setdefault(found.tags.get(MODEL_TAG, ""), found)
        names = sorted(set(runs) | set(newest))
        panels = []
        for name in names:
            mine = model in ("", name)  # ?night= and ?run= pick in ?model= alone
            of_model = runs.get(name, [])
            panels.append(_panel(ws, name, of_model, newest.get(name), night * mine, run * mine))
        html = render(
            "recommendations.html",
            title="Recommendations",
            panels=panels,
            many=len(panels) > 1,
            limit=MAX_NIGHTS,
            capped=len(nights) >= MAX_NIGHTS,
        )
        return HTMLResponse(html)

    return router


def _panel(
    ws: Workspace,
    model: str,
    runs: list[RunInfo],
    holdout: RunInfo | None,
    wanted: str,
    run_id: str,
) -> dict[str, Any]:
    """One model's part of the page."""
    live, live_error = _publication(ws, model)
    versions = _versions(ws, model) if runs else {}
    # Every run is a row: a night run again (a rerun, a retry) shows each attempt.
    order = sorted(runs, key=lambda r: (r.tags[NIGHT_TAG], r.start_time), reverse=True)
    rows = [_night(ws, run, versions.get(run.run_id)) for run in order]
    if live is not None:
        _mark(rows, live.night, "live", live.version)
        if live.previous_night is not None:
            _mark(rows, live.previous_night, "kept", None)
    selected = _selected(rows, wanted, run_id)
    return {
        "model": model,
        "live": live,
        "live_error": live_error,
        "nights": rows,
        "charts": _bias_charts(rows),
        "selected": selected,
        "wanted_missing": bool(wanted) and all(r["night"] != wanted for r in rows),
        "wanted": wanted,
        "genres": _genre_chart(selected) if selected else None,
        "holdout": _holdout(holdout),
    }


def _mark(rows: list[dict[str, Any]], night: str, key: str, version: int | None) -> None:
    """Set ``key`` on the run whose lists the pointer names: the newest published run of
    ``night`` (of ``version``, when the pointer records it)."""
    published = [r for r in rows if r["night"] == night and r["published"]]
    exact = [r for r in published if version is None or r["version"] == version]
    for row in (exact or published)[:1]:
        row[key] = True


def _selected(rows: list[dict[str, Any]], night: str, run_id: str) -> dict[str, Any] | None:
    """The row whose genres are drawn: ``run_id``'s, else ``night``'s (its live or kept
    run first), else the live one, else the newest with a ``bias.json``."""
    exact = [r for r in rows if run_id and r["run"].run_id == run_id]
    same = [r for r in rows if r["night"] == night]
    if exact or same:
        return (exact or sorted(same, key=lambda r: (not r["live"], not r["kept"])))[0]
    live = [r for r in rows if r["live"]]
    return next(iter(live or [r for r in rows if r["bias"]] or rows), None)


def _publication(ws: Workspace, model: str) -> tuple[Publication | None, str | None]:
    """(the night readers see now, or None; why it is unknown: a store that is down)."""
    from modelyard.serving import RecommendationLists

    try:
        return RecommendationLists(ws.online).current(model), None
    except ModelyardError as exc:
        return None, exc.message


def _versions(ws: Workspace, model: str) -> dict[str, int]:
    """The run each registered version of ``model`` came from -> that version."""
    try:
        return {v.run_id: v.version for v in ws.registry.versions(model) if v.run_id}
    except ModelyardError:  # not registered (or deleted): the column stays empty
        return {}


def _bias(ws: Workspace, run: RunInfo) -> dict[str, Any] | None:
    """The night's ``bias.json``, or None when it has none or it cannot be read."""
    digest = next((a["digest"] for a in run.artifacts if a["path"] == "bias.json"), None)
    if digest is None:
        return None
    try:
        found = json.loads(ws.artifacts.get(digest))
    except (ModelyardError, ValueError, OSError):
        return None
    return found if isinstance(found, dict) else None


def _night(ws: Workspace, run: RunInfo, version: int | None) -> dict[str, Any]:
    bias = _bias(ws, run)
    night = run.tags[NIGHT_TAG]
    verdict = run.tags.get(VERDICT_TAG) or (bias or {}).get("verdict") or run.status
    checks: dict[str, dict[str, Any]] = {}
    for check in (bias or {}).get("checks", []):
        checks[check["name"]] = {**check, "text": _check_text(check)}
    for name in CHECKS:  # a night without bias.json still has its metrics
        value = run.metrics.get(f"bias.{name}")
        if name not in checks and value is not None:
            checks[name] = {"name": name, "value": value, "passed": None, "text": f"{value:.3g}"}
    return {
        "night": night,
        "run": run,
        "verdict": verdict,
        "published": run.tags.get(PUBLISHED_TAG),
        "checks": checks,
        "users": run.metrics.get("users"),
        "version": version,
        "seconds_top_n": run.metrics.get("seconds_top_n"),
        "live": False,  # set by _mark
        "kept": False,
        "bias": bias,
    }


def _check_text(check: dict[str, Any]) -> str:
    """``1.63 ≤ 1.65``, ``0.0861 ≥ 0.05``, ``0.0193 in [0.01, 10]``: the value against its
    threshold, as it stands (a breach reads ``1.64 > 1.635``, ``2.49 outside [0.01, 2]``)."""
    value, op, threshold = check.get("value"), check.get("op"), check.get("threshold")
    shown = "?" if value is None else f"{value:.4g}"
    passed = bool(check.get("passed", True))
    if op == "within" and isinstance(threshold, list) and len(threshold) == 2:
        where = "in" if passed else "outside"
        return f"{shown} {where} [{threshold[0]:g}, {threshold[1]:g}]"
    if op in ("<=", ">=") and isinstance(threshold, int | float):
        sign = {("<=", True): "≤", ("<=", False): ">", (">=", True): "≥", (">=", False): "<"}
        return f"{shown} {sign[(op, passed)]} {threshold:g}"
    return shown


def _when(night: str) -> float | None:
    """The night as POSIX seconds at 00:00 UTC (the charts' time axis)."""
    if not _NIGHT.fullmatch(night):
        return None
    try:
        return datetime.strptime(night, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _bias_charts(rows: list[dict[str, Any]]) -> list[Markup]:
    """Each check over the nights, with each night's threshold (two for a band) drawn as
    a line; a bound far above every value is named in the title instead."""
    charts = []
    for name, label in CHECKS.items():
        points: list[tuple[float, float]] = []
        bounds: dict[str, list[tuple[float, float]]] = {"min": [], "max": []}
        for row in reversed(rows):  # oldest first
            check, x = row["checks"].get(name), _when(row["night"])
            if check is None or check.get("value") is None or x is None:
                continue
            points.append((x, float(check["value"])))
            for side, bound in _bounds(check):
                line = bounds[side]
                if line and line[-1][1] != bound:  # a step where the threshold changed
                    line.append((x, line[-1][1]))
                line.append((x, bound))
        if not points:
            continue
        title, top = f"{label} per night", max(v for _, v in points)
        series = [_charts.Series(label, points)]
        for side, line in bounds.items():
            if not line:
                continue
            if side == "max" and top > 0 and min(v for _, v in line) > OFF_CHART * top:
                title += f" (max {line[-1][1]:g} off the chart)"
                continue
            shown = {f"{v:g}" for _, v in line}
            text = f"{side} {line[-1][1]:g}" if len(shown) == 1 else f"{side} (per night)"
            series.append(_charts.Series(text, line))
        charts.append(_charts.lines(title, series, "night", y_label=label, time_axis=True))
    return charts


def _bounds(check: dict[str, Any]) -> list[tuple[str, float]]:
    """A check's threshold as (``min`` or ``max``, value) pairs."""
    op, threshold = check.get("op"), check.get("threshold")
    if op == "within" and isinstance(threshold, list) and len(threshold) == 2:
        return [("min", float(threshold[0])), ("max", float(threshold[1]))]
    if op in ("<=", ">=") and isinstance(threshold, int | float):
        return [("max" if op == "<=" else "min", float(threshold))]
    return []


def _genre_chart(row: dict[str, Any]) -> Markup | None:
    """Exposure share against catalogue share per genre; the exposure bar of a checked
    genre outside the band is drawn red (and its label marked ✗)."""
    groups = (row["bias"] or {}).get("groups") or []
    if not groups:
        return None
    names = [("✗ " if g["checked"] and not g["passed"] else "") + g["group"] for g in groups]
    svg = str(
        _charts.bars(
            f"exposure per genre, night {row['night']}",
            names,
            [
                ("top-N exposure", [g["exposure_share"] for g in groups]),
                ("catalogue share", [g["catalogue_share"] for g in groups]),
            ],
            x_label="genre",
            y_label="share",
        )
    )
    for name, g in zip(names, groups, strict=True):
        if g["checked"] and not g["passed"]:
            # Bars carry "<title>CATEGORY: SERIES": the exposure bar of this genre turns red.
            bar = f'fill="{COLORS[0]}"><title>{escape(name)}: top-N exposure'
            svg = svg.replace(
                bar,
                f'fill="{BREACH}" class="breach"><title>{escape(name)}: top-N exposure (breach)',
                1,
            )
    return Markup(svg)  # _charts.bars' own markup, labels escaped there


def _holdout(run: RunInfo | None) -> dict[str, Any] | None:
    """ALS against the popularity baseline on the holdout, and a chart of both."""
    if run is None:
        return None
    rows = [
        (label, run.metrics.get(key), run.metrics.get(f"popularity_{key}"))
        for label, key in HOLDOUT_METRICS.items()
    ]
    rows = [r for r in rows if r[1] is not None or r[2] is not None]
    chart = None
    if rows:
        chart = _charts.bars(
            "ALS against the popularity baseline (holdout)",
            [r[0] for r in rows],
            [("ALS", [r[1] or 0.0 for r in rows]), ("popularity", [r[2] or 0.0 for r in rows])],
            y_label="value",
        )
    return {"run": run, "rows": rows, "chart": chart}
