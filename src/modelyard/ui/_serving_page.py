"""The dashboard's Serving page: live traffic per model and variant, the canary's split
and the results of its steps. The table refreshes every two seconds without a reload
(``static/refresh.js`` swaps in ``/ui/serving/panel``, rendered here like any page)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from modelyard.errors import ModelyardError
from modelyard.ui import _charts
from modelyard.ui._render import render
from modelyard.ui._traffic import TrafficRow

if TYPE_CHECKING:
    from collections import deque

    from modelyard.workspace import Workspace

CANARY_RECORDS = 8


class Traffic(Protocol):
    source: str
    history: deque[tuple[float, dict[str, float]]]
    window_s: float | None  # what rates and latencies cover (None: since start, so far)

    def rows(self) -> list[TrafficRow]: ...


def serving_routes(ws: Workspace, traffic: Traffic) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/serving")
    def page() -> Response:
        return HTMLResponse(render("serving.html", title="Serving", panel=_panel(ws, traffic)))

    @router.get("/serving/panel")
    def panel() -> Response:
        return HTMLResponse(_panel(ws, traffic), headers={"cache-control": "no-store"})

    return router


def _panel(ws: Workspace, traffic: Traffic) -> Markup:
    rows = traffic.rows()
    models = sorted({r.model for r in rows})
    canaries = {m: _canary(ws, m) for m in models}
    return Markup(
        render(
            "serving_panel.html",
            rows=rows,
            source=traffic.source,
            window_s=traffic.window_s,
            canaries=canaries,
            chart=_rate_chart(traffic),
        )
    )


def _canary(ws: Workspace, model: str) -> dict[str, object]:
    """The model's traffic split (as the registry holds it) and its rollout's last steps."""
    from modelyard.registry import get_traffic
    from modelyard.release import release_history

    try:
        split = get_traffic(ws.registry, model)
        steps = [
            r
            for r in release_history(ws.metadata, model, limit=40)
            if r.action.startswith("canary")
        ][:CANARY_RECORDS]
    except ModelyardError as exc:  # the metadata store blinked: say so, keep the table
        return {"split": None, "steps": [], "problem": exc.message}
    return {"split": split, "steps": steps, "problem": None}


def _rate_chart(traffic: Traffic) -> Markup | None:
    points = list(traffic.history)
    if len(points) < 2:
        return None
    start = points[0][0]
    models = sorted({m for _, rates in points for m in rates})[:7]
    series = [
        _charts.Series(m, [(at - start, rates.get(m, 0.0)) for at, rates in points]) for m in models
    ]
    return _charts.lines("requests per second", series, x_label="seconds on this page's server")
