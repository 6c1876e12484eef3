"""Tiny inline SVG charts for the offline monitoring report: no plotting library, no JS.

Every label passes through ``html.escape``: column names, categories and variants are
user strings and end up inside the page. Text widths are estimated (``CHAR`` px a
character at the 10 px font) to lay out the legend, shorten, turn and thin x labels, so
none overlap. The dashboard's charts (``modelyard.ui``, a layer above) follow the same rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from html import escape

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")
WIDTH, HEIGHT = 520, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 24, 36  # the plot's margins, below the legend
CHAR, GAP, TURNED_GAP = 6.2, 8, 16  # px: a character; between labels; between turned ones
KEY, ROW, LABEL = 14, 14, 14  # a legend key and its space; a legend row; longest x label
INTERVAL = re.compile(r"[\[(]\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*[\])]")  # a bin: [a, b)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if 1e4 <= abs(value) < 1e12 and value == round(value) else f"{value:.3g}"


def _short(text: str, limit: int = LABEL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _y_axis(values: Sequence[float], left: float, base: float) -> tuple[list[str], float, float]:
    """(grid lines and labels, low, high): round ticks from 0 (or below) up past the top."""
    low, high = min([0.0, *values]), max([0.0, *values])
    if high <= low:
        high = low + 1.0
    raw = (high - low) / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    low, high = math.floor(low / step) * step, math.ceil(high / step - 1e-9) * step
    body = []
    for i in range(round((high - low) / step) + 1):
        t = round(low + i * step, 12)
        y = base - (base - TOP) * (t - low) / (high - low)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{_fmt(t)}</text>'
        )
    return body, low, high


def _x_labels(
    labels: Sequence[str], left: float, base: float, *, turn: bool
) -> tuple[list[str], int]:
    """Each label under its slot, shortened; with ``turn`` turned 45 degrees when level
    ones would not fit; thinned to every k-th when they would touch; (SVG, extra height)."""
    slot = (WIDTH - RIGHT - left) / max(len(labels), 1)
    texts = [_short(t) for t in labels]
    longest = max((len(t) for t in texts), default=0) * CHAR
    turned = turn and longest + GAP > slot
    every = math.ceil((TURNED_GAP if turned else longest + GAP) / slot)
    body = []
    for i in range(0, len(texts), every):
        x, y = left + (i + 0.5) * slot, base + 12
        if not turned and x + len(texts[i]) * CHAR / 2 > WIDTH:
            break  # the last level label would pass the right edge
        how = f'"end" transform="rotate(-45 {x:.1f} {y})"' if turned else '"middle"'
        body.append(
            f'<text class="xtick" x="{x:.1f}" y="{y}" text-anchor={how}>{escape(texts[i])}</text>'
        )
    return body, int(0.71 * longest) if turned else 0


def _edge_labels(labels: Sequence[str], left: float, base: float) -> list[str] | None:
    """Numeric bins (``[a, b)``, each starting where the last ended) labelled at their
    inner edges, level, rounded to the fewest digits that keep neighbours apart, thinned so
    they keep ``GAP`` px apart; None for other labels."""
    pairs = [INTERVAL.fullmatch(t.strip()) for t in labels]
    if len(labels) < 2 or not all(pairs):
        return None
    bounds = [(m[1], m[2]) for m in pairs if m]
    if any(a[1] != b[0] for a, b in zip(bounds, bounds[1:], strict=False)):
        return None
    try:
        edges = [float(upper) for _, upper in bounds[:-1]]
    except ValueError:
        return None
    for digits in range(3, 7):
        texts = [f"{v:.0f}" if abs(v) >= 100 else f"{v:.{digits}g}" for v in edges]
        if all(a != b for a, b in zip(texts, texts[1:], strict=False)):
            break
    slot = (WIDTH - RIGHT - left) / len(labels)
    every = math.ceil((max(len(t) for t in texts) * CHAR + GAP) / slot)
    return [
        f'<text class="xtick" x="{left + (i + 1) * slot:.1f}" y="{base + 12}" '
        f'text-anchor="middle">{escape(texts[i])}</text>'
        for i in range(0, len(texts), every)
    ]


def _left(labels: Sequence[str], *, turn: bool) -> int:
    """Room on the left for the first label (turned, or level) to end inside the chart."""
    slot = (WIDTH - RIGHT - LEFT) / max(len(labels), 1)
    longest = max((len(_short(t)) for t in labels), default=0) * CHAR
    reach = 0.71 * longest if turn and longest + GAP > slot else longest / 2
    return max(LEFT, int(reach - slot / 2) + 4)


def _frame(title: str, body: list[str], legend: Sequence[str], *, left: int, extra: int = 0) -> str:
    """The SVG: the legend, entries as wide as their labels, wrapping onto more rows; the
    plot below it, moved down by those rows and by ``extra`` taller for turned labels."""
    keys, x, row = [], float(LEFT), 0
    for i, name in enumerate(legend):
        text = _short(name, 16)
        wide = KEY + len(text) * CHAR
        if x > LEFT and x + wide > WIDTH - RIGHT:
            x, row = float(LEFT), row + 1
        keys.append(
            f'<g class="legend"><rect x="{x:.1f}" y="{4 + ROW * row}" width="10" height="10" '
            f'fill="{COLORS[i % len(COLORS)]}"/>'
            f'<text x="{x + KEY:.1f}" y="{13 + ROW * row}">{escape(text)}</text></g>'
        )
        x += wide + 12
    shift = ROW * row
    height = HEIGHT + shift + extra
    base = HEIGHT - BOTTOM
    axis = (
        f'<line x1="{left}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#888"/>'
        f'<line x1="{left}" y1="{TOP}" x2="{left}" y2="{base}" stroke="#888"/>'
    )
    return (
        f'<svg width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" font-size="10" font-family="sans-serif">'
        f"<title>{escape(title)}</title>{''.join(keys)}"
        f'<g transform="translate(0 {shift})">{"".join(body)}{axis}</g></svg>'
    )


def bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Side-by-side bars per label, one colour per series (e.g. reference vs current).
    Numeric bins are labelled at their edges; other labels each under their bar."""
    series = list(series)[: len(COLORS)]  # a colour, and so a legend entry, for each
    edges = _edge_labels(labels, LEFT, HEIGHT - BOTTOM)
    left, base = LEFT if edges else _left(labels, turn=True), HEIGHT - BOTTOM
    body, low, high = _y_axis([v for _, values in series for v in values], left, base)
    slot = (WIDTH - RIGHT - left) / max(len(labels), 1)
    bar_w = slot * 0.8 / max(len(series), 1)
    for i, label in enumerate(labels):
        x0 = left + i * slot + slot * 0.1
        for s, (name, values) in enumerate(series):
            value = values[i] if i < len(values) else 0.0
            h = (base - TOP) * value / (high - low)
            body.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[s % len(COLORS)]}">'
                f"<title>{escape(label)} {escape(name)}: {_fmt(value)}</title></rect>"
            )
    ticks, extra = (edges, 0) if edges else _x_labels(labels, left, base, turn=True)
    return _frame(title, body + ticks, [name for name, _ in series], left=left, extra=extra)


def lines(
    title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]]
) -> str:
    """A line per series over the x labels (e.g. hours); gaps where a value is None. Each
    label is the middle of its slot, so one label (one day, one hour) sits in the middle."""
    series = list(series)[: len(COLORS)]
    left, base = _left(labels, turn=False), HEIGHT - BOTTOM
    values = [v for _, vs in series for v in vs if v is not None]
    body, low, high = _y_axis(values, left, base)
    slot = (WIDTH - RIGHT - left) / max(len(labels), 1)
    for s, (name, vs) in enumerate(series):
        color = COLORS[s % len(COLORS)]
        points = [
            (left + (i + 0.5) * slot, base - (base - TOP) * (v - low) / (high - low), v)
            for i, v in enumerate(vs)
            if v is not None
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        body += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{color}">'
            f"<title>{escape(name)}: {_fmt(v)}</title></circle>"
            for x, y, v in points
        ]
    ticks, extra = _x_labels(labels, left, base, turn=False)  # times read best level
    return _frame(title, body + ticks, [name for name, _ in series], left=left, extra=extra)
