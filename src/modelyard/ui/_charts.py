"""Server-drawn SVG charts for the dashboard: lines over steps or time, and scatter plots.

No JavaScript plotting library: a chart is a few dozen SVG elements computed here, so a
page works offline and renders before any script runs. Every label goes through the
template engine's escaping (``markupsafe.escape``), since run names, metric keys and
parameter values are user text. Axes carry ticks at round numbers, and long labels are
shortened, so they never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")
WIDTH, HEIGHT = 560, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 44, 36


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y)


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round-numbered ticks covering ``low``..``high`` (1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    out = []
    value = first
    while value <= high + step * 1e-9:
        out.append(round(value, 12))
        value += step
    return out


def _label(value: float) -> str:
    return f"{value:.4g}"


def _scale(low: float, high: float, start: float, end: float) -> tuple[float, float]:
    span = (high - low) or 1.0
    return (end - start) / span, start


def lines(title: str, series: Sequence[Series], x_label: str = "step") -> Markup:
    """One line per series over shared axes; the legend names each series."""
    return _plot(title, series, x_label, joined=True)


def scatter(title: str, series: Sequence[Series], x_label: str) -> Markup:
    """One dot per point, one colour per series."""
    return _plot(title, series, x_label, joined=False)


def _plot(title: str, series: Sequence[Series], x_label: str, *, joined: bool) -> Markup:
    points = [p for s in series for p in s.points if all(map(math.isfinite, p))]
    body: list[str] = []
    if not points:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text>')
        return _frame(title, body, series)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    sx, ox = _scale(x0, x1, LEFT, WIDTH - RIGHT)
    sy, oy = _scale(y0, y1, HEIGHT - BOTTOM, TOP)

    def px(x: float) -> float:
        return ox + (x - x0) * sx

    def py(y: float) -> float:
        return oy + (y - y0) * sy

    for t in ticks(y0, y1):
        y = py(t)
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
        )
        body.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{_label(t)}</text>')
    for t in ticks(x0, x1, 6):
        x = px(t)
        body.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{_label(t)}</text>'
        )
    body.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        good = [(px(x), py(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
        if joined and len(good) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in good)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        for x, y in good if (not joined or len(good) == 1 or len(good) <= 40) else []:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    return _frame(title, body, series)


def _frame(title: str, body: list[str], series: Sequence[Series]) -> Markup:
    legend = "".join(
        f'<rect x="{LEFT + 100 * i}" y="22" width="10" height="10" '
        f'fill="{COLORS[i % len(COLORS)]}"/>'
        f'<text x="{LEFT + 100 * i + 14}" y="31">{escape(_short(s.name))}</text>'
        for i, s in enumerate(series[:5])
    )
    legend += f'<text x="{LEFT}" y="14" class="title">{escape(title)}</text>'
    bottom = HEIGHT - BOTTOM
    axes = (
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" class="axis"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="axis"/>'
    )
    return Markup(
        f'<svg class="chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f"{legend}{axes}{''.join(body)}</svg>"
    )


def _short(name: str, limit: int = 16) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
