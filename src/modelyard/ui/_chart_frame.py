"""What every dashboard chart shares: its size, round ticks on numbers and on times, the
legend and the axes.

The server draws without a browser to measure text, so a label's width is estimated:
``CHAR`` px a character at the charts' 10 px font, a little over the average glyph. Legend
entries, x ticks and bar labels are spaced by that estimate, so they never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")
WIDTH, HEIGHT = 560, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 44, 36
CHAR = 6.2  # px per character of a 10px label
GAP = 8  # px at least between two level x tick labels
TURNED_GAP = 16  # px between labels turned 45 degrees: their lines stay 11 px apart
KEY, LEGEND_GAP, ROW = 14, 12, 14  # a legend key and its space; between entries; per row
HOUR, DAY = 3600, 86400
# Steps of a time axis, seconds: the smallest whose labels fit is taken.
TIME_STEPS: tuple[int, ...] = (60, 300, 900, 1800, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR)
TIME_STEPS += (DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY, 91 * DAY, 182 * DAY, 364 * DAY)


def width(text: str) -> float:
    """The estimated width of ``text`` in px at the charts' font size."""
    return len(text) * CHAR


def short(name: str, limit: int = 16) -> str:
    """``name`` cut to ``limit`` characters; a dotted name keeps its last part, which is
    what tells ``output.probability_0`` from ``output.probability_1``."""
    if len(name) <= limit:
        return name
    head, dot, tail = name.rpartition(".")
    if dot and len(tail) < limit - 1:
        return head[: limit - len(tail) - 2] + "…." + tail
    return name[: limit - 1] + "…"


def label(value: float) -> str:
    if 1e4 <= abs(value) < 1e12 and value == round(value):
        return f"{value:.0f}"  # 12000, not 1.2e+04
    return f"{value:.4g}"


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


def number_ticks(low: float, high: float, px: float) -> list[tuple[float, str]]:
    """Round ticks over ``low..high`` with labels, as many as fit level ``GAP`` px apart
    (``px``: pixels per unit)."""
    found: list[float] = []
    for count in range(6, 0, -1):
        found = ticks(low, high, count)
        widest = max((width(label(t)) for t in found), default=0.0)
        if len(found) < 2 or (found[1] - found[0]) * px >= widest + GAP:
            break
    return [(t, label(t)) for t in found]


def time_ticks(low: float, high: float, px: float) -> list[tuple[float, str]]:
    """Ticks at round UTC times over ``low..high`` (POSIX seconds), labelled ``12-04 06:00``
    (``12-04`` from a day's step on), the smallest step whose labels fit ``GAP`` px apart."""
    step, pattern = TIME_STEPS[-1], "%m-%d"
    for candidate in TIME_STEPS:
        fits = "%m-%d" if candidate >= DAY else "%m-%d %H:%M"
        if candidate * px >= width(datetime(2000, 1, 1).strftime(fits)) + GAP:
            step, pattern = candidate, fits
            break
    first = math.ceil(low / step) * step
    return [
        (t, datetime.fromtimestamp(t, UTC).strftime(pattern))
        for t in range(int(first), int(high) + 1, step)
    ]


def padded(
    low: float, high: float, *, alone: float | None = None, floor: float | None = None
) -> tuple[float, float]:
    """``low..high`` widened 5% a side, so points stay off the axes. One value gets
    ``alone`` a side (default: a tenth of it, or 0.5 around zero), so it sits centred on a
    sensible range rather than on a range of width 2 around it. Widening stops at
    ``floor`` when the values do not pass it: rates and counts get no negative ticks."""
    if high > low:
        out = low - (high - low) * 0.05, high + (high - low) * 0.05
    else:
        half = alone if alone is not None else (abs(low) * 0.1 or 0.5)
        out = low - half, high + half
    if floor is not None and low >= floor > out[0]:
        return floor, out[1]
    return out


def y_title(text: str, base: float) -> str:
    mid = (TOP + base) / 2
    return (
        f'<text x="12" y="{mid:.1f}" transform="rotate(-90 12 {mid:.1f})" '
        f'text-anchor="middle">{escape(text)}</text>'
    )


def legend(names: Sequence[str], left: float) -> tuple[str, int]:
    """(the legend's SVG, its number of rows): one entry per name, each as wide as its
    label, side by side, wrapping to a new row where the next would pass the right edge."""
    parts, x, row = [], float(left), 0
    for i, name in enumerate(names):
        text = short(name)
        wide = KEY + width(text)
        if x > left and x + wide > WIDTH - RIGHT:
            x, row = float(left), row + 1
        y = 22 + ROW * row
        parts.append(
            f'<g class="legend"><rect x="{x:.1f}" y="{y}" width="10" height="10" '
            f'fill="{COLORS[i % len(COLORS)]}"/>'
            f'<text x="{x + KEY:.1f}" y="{y + 9}">{escape(text)}</text></g>'
        )
        x += wide + LEGEND_GAP
    return "".join(parts), row + 1


def frame(
    title: str,
    body: list[str],
    names: Sequence[str],
    *,
    height: int = HEIGHT,
    left: int = LEFT,
    bottom: int = BOTTOM,
) -> Markup:
    """The chart's SVG: title, legend, axes and ``body``; a legend of more than one row
    moves the plot down and makes the chart that much taller."""
    keys, rows = legend(names, left)
    shift = ROW * (rows - 1)
    base = height - bottom
    axes = (
        f'<line x1="{left}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" class="axis"/>'
        f'<line x1="{left}" y1="{TOP}" x2="{left}" y2="{base}" class="axis"/>'
    )
    plot = f"{axes}{''.join(body)}"
    if shift:
        plot = f'<g transform="translate(0 {shift})">{plot}</g>'
    height += shift
    return Markup(
        f'<svg class="chart" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="{left}" y="14" class="title">{escape(title)}</text>{keys}{plot}</svg>'
    )
