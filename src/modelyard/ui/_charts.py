"""Server-drawn SVG charts for the dashboard: lines over steps or time, scatter plots, and
bars side by side (a reference histogram against the current one, ``_chart_bars.py``).

No JavaScript plotting library: a chart is a few dozen SVG elements computed here, so a
page works offline and renders before any script runs. Every label goes through the
template engine's escaping (``markupsafe.escape``), since run names, metric keys and
parameter values are user text. Axes carry ticks at round numbers (or round times), the
legend names every series drawn, and labels are spaced by their estimated width
(``_chart_frame.py``), so they never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from modelyard.ui._chart_bars import bars
from modelyard.ui._chart_frame import (
    BOTTOM,
    COLORS,
    HEIGHT,
    HOUR,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    frame,
    label,
    number_ticks,
    padded,
    ticks,
    time_ticks,
    width,
    y_title,
)

__all__ = ["Series", "bars", "lines", "scatter", "ticks"]


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y)


def lines(
    title: str,
    series: Sequence[Series],
    x_label: str = "step",
    *,
    y_label: str = "",
    time_axis: bool = False,
) -> Markup:
    """One line per series over shared axes; the legend names each series. With
    ``time_axis`` the x values are POSIX seconds, labelled as UTC dates and times."""
    return _plot(title, series, x_label, y_label, joined=True, time_axis=time_axis)


def scatter(title: str, series: Sequence[Series], x_label: str) -> Markup:
    """One dot per point, one colour per series."""
    return _plot(title, series, x_label, "", joined=False, time_axis=False)


def _plot(
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    *,
    joined: bool,
    time_axis: bool,
) -> Markup:
    shown = list(series)[: len(COLORS)]  # a colour, and so a legend entry, for each drawn
    if len(series) > len(shown):
        title = f"{title} (first {len(shown)} of {len(series)})"
    points = [p for s in shown for p in s.points if all(map(math.isfinite, p))]
    names = [s.name for s in shown]
    body: list[str] = [y_title(y_label, HEIGHT - BOTTOM)] if y_label else []
    if not points:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text>')
        return frame(title, body, names)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    # One time: an hour either side. One number: a tenth of it either side.
    x0, x1 = padded(min(xs), max(xs), alone=HOUR if time_axis else None)
    y0, y1 = padded(min(ys), max(ys), floor=0.0)
    sx = (WIDTH - RIGHT - LEFT) / (x1 - x0)
    sy = (TOP - (HEIGHT - BOTTOM)) / (y1 - y0)

    def px(x: float) -> float:
        return LEFT + (x - x0) * sx

    def py(y: float) -> float:
        return HEIGHT - BOTTOM + (y - y0) * sy

    for t in ticks(y0, y1):
        y = py(t)
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
        )
        body.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{label(t)}</text>')
    for t, text in (time_ticks if time_axis else number_ticks)(x0, x1, sx):
        x = px(t)
        if width(text) / 2 <= x <= WIDTH - width(text) / 2:  # whole inside the chart
            body.append(
                f'<text class="xtick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" '
                f'text-anchor="middle">{escape(text)}</text>'
            )
    body.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    for i, s in enumerate(shown):
        color = COLORS[i % len(COLORS)]
        good = [(px(x), py(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
        parts = [f"<title>{escape(s.name)}</title>"]
        if joined and len(good) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in good)
            parts.append(f'<polyline points="{path}" fill="none" stroke-width="2"/>')
        for x, y in good if (not joined or len(good) <= 40) else []:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" stroke="none"/>')
        body.append(f'<g class="series" stroke="{color}" fill="{color}">{"".join(parts)}</g>')
    return frame(title, body, names)
