"""The dashboard's A/B page: ``/ui/ab[?model=M][&since=7d]``.

For each model whose logged predictions in the window came from two variants (an A/B
test, a canary), the report ``modelyard release ab-report`` prints
(``release.ab_report``): each variant's requests, labels, accuracy with its interval and
latency, the accuracy difference with its interval drawn against zero, and the verdict
with the command that acts on it; under it, each variant's confusion matrix on the
held-out set of its version's run (``confusion_matrix.json``, which the images blueprint
logs), where the run has one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape

from modelyard.errors import InvalidInputError, ModelyardError
from modelyard.ui._chart_frame import ticks

if TYPE_CHECKING:
    from modelyard.release import ABReport
    from modelyard.workspace import Workspace

WIDTH, ROW, LEFT, RIGHT = 640, 34, 150, 24
CHAMPION, CANDIDATE, DIFFERENCE = "#1d4ed8", "#d97706", "#374151"


def ab_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/ab")
    def ab(model: str = "", since: str = "7d") -> Response:
        from modelyard.monitoring import parse_window
        from modelyard.release import ab_report

        try:
            start = datetime.now(UTC) - parse_window(since)
        except ModelyardError as exc:
            return HTMLResponse(_page([], since, model, str(exc)), status_code=422)
        known = [m.name for m in ws.registry.list()]
        if model and model not in known:
            note = f"model '{model}' is not registered; the models are {', '.join(known) or 'none'}"
            return HTMLResponse(_page([{"model": model, "note": note}], since, model, ""))
        names = [model] if model else known
        panels = []
        for name in names:
            try:
                report = ab_report(ws.predictions, name, since=start)
            except InvalidInputError as exc:
                if model:  # asked for by name: say why there is nothing
                    panels.append({"model": name, "note": exc.message})
                continue
            if report.candidate is None and not model:
                continue
            panels.append(_panel(ws, report))
        return HTMLResponse(_page(panels, since, model, ""))

    return router


def _page(panels: list[dict[str, Any]], since: str, model: str, error: str) -> str:
    from modelyard.ui._render import render

    return render(
        "ab.html", title="A/B tests", panels=panels, since=since, model=model, error=error
    )


def _panel(ws: Workspace, report: ABReport) -> dict[str, Any]:
    rows = [r for r in (report.champion, report.candidate) if r is not None]
    matrices = []
    for row in rows:
        for version in row.versions[-1:]:
            matrix = _matrix(ws, report.model, version)
            if matrix is not None:
                matrices.append({"variant": row.variant, "version": version, **matrix})
    advice = {
        "promote": f"modelyard models alias {report.model} production "
        f"{report.candidate.versions[-1] if report.candidate else ''}",
        "keep_champion": "take the ab table out of the serve spec to end the test",
        "keep_collecting": "keep the test running and send labels to POST /v1/feedback",
    }[report.verdict]
    return {
        "model": report.model,
        "note": None,
        "report": report,
        "rows": rows,
        "chart": _intervals(report),
        "matrices": matrices,
        "advice": advice,
        "level": f"{report.confidence:.0%}",
    }


def _matrix(ws: Workspace, model: str, version: int) -> dict[str, Any] | None:
    """The version's run's confusion matrix with each cell's share of its row (for colour)."""
    try:
        run_id = ws.registry.get(f"{model}/{version}").run_id
        if run_id is None:
            return None
        found = [a for a in ws.runs.get(run_id).artifacts if a["path"] == "confusion_matrix.json"]
        if not found:
            return None
        data = json.loads(ws.artifacts.get(found[0]["digest"]))
    except (ModelyardError, ValueError, KeyError):
        return None
    cells = []
    for counts in data["matrix"]:
        total = sum(counts) or 1
        cells.append([(c, c / total) for c in counts])
    return {"labels": data["labels"], "cells": cells}


def _x(value: float, low: float, high: float) -> float:
    return LEFT + (value - low) / (high - low) * (WIDTH - LEFT - RIGHT)


def _intervals(report: ABReport) -> Markup | None:
    """Accuracy of each variant and the difference, each with its interval: one line per
    row on a shared axis of percentage points, zero marked for the difference."""
    lines: list[tuple[str, float, float, float, str]] = []
    for row, colour in ((report.champion, CHAMPION), (report.candidate, CANDIDATE)):
        if row is not None and row.accuracy is not None:
            low, high = row.accuracy_low or 0.0, row.accuracy_high or 0.0
            lines.append((row.variant, row.accuracy, low, high, colour))
    if not lines:
        return None
    accuracy = _strip(lines, "accuracy, %")
    if report.difference is None:
        return accuracy
    d, low, high = report.difference, report.difference_low or 0.0, report.difference_high or 0.0
    difference = _strip(
        [("candidate - champion", d, low, high, DIFFERENCE)], "difference, points", zero=True
    )
    return Markup(accuracy + difference)


def _strip(
    lines: list[tuple[str, float, float, float, str]], axis: str, zero: bool = False
) -> Markup:
    lo = min(line[2] for line in lines)
    hi = max(line[3] for line in lines)
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    pad = max((hi - lo) * 0.15, 0.005)
    lo, hi = lo - pad, hi + pad
    height = ROW * len(lines) + 36
    parts = [
        f'<svg class="chart interval" role="img" aria-label="{escape(axis)}" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for value in ticks(lo * 100, hi * 100):  # round numbers, in percent or points
        x = _x(value / 100, lo, hi)
        tick = f"{value:+g}" if zero and value else f"{value:g}"
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="6" y2="{height - 24}" stroke="#e5e7eb"/>'
            f'<text x="{x:.1f}" y="{height - 10}" font-size="11" text-anchor="middle" '
            f'fill="#6b7280">{tick}</text>'
        )
    if zero:
        x0 = _x(0.0, lo, hi)
        parts.append(
            f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="6" y2="{height - 24}" stroke="#111827" '
            'stroke-dasharray="4 3" class="zero"/>'
        )
    for i, (name, value, low, high, colour) in enumerate(lines):
        y = 20 + i * ROW
        shown = f"{escape(name)}: {value * 100:.1f} ({low * 100:.1f} to {high * 100:.1f})"
        parts.append(
            f'<text x="{LEFT - 8}" y="{y + 4}" font-size="12" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<line x1="{_x(low, lo, hi):.1f}" x2="{_x(high, lo, hi):.1f}" y1="{y}" y2="{y}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{_x(value, lo, hi):.1f}" cy="{y}" r="5" fill="{colour}">'
            f"<title>{shown}</title></circle>"
        )
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="{height - 24}" font-size="11" text-anchor="end" '
        f'fill="#6b7280">{escape(axis)}</text></svg>'
    )
    return Markup("".join(parts))
