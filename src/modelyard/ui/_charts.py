"""Server-drawn SVG charts for the dashboard: lines over steps or time, scatter plots, and
bars side by side (a reference histogram against the current one).

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
CHAR = 6.0  # px per character of a 10px label, a little over the average glyph
TURNED_GAP = 16  # px between labels turned 45 degrees: their lines stay 11 px apart


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


def lines(
    title: str, series: Sequence[Series], x_label: str = "step", *, y_label: str = ""
) -> Markup:
    """One line per series over shared axes; the legend names each series."""
    return _plot(title, series, x_label, y_label, joined=True)


def scatter(title: str, series: Sequence[Series], x_label: str) -> Markup:
    """One dot per point, one colour per series."""
    return _plot(title, series, x_label, "", joined=False)


def _plot(
    title: str, series: Sequence[Series], x_label: str, y_label: str, *, joined: bool
) -> Markup:
    points = [p for s in series for p in s.points if all(map(math.isfinite, p))]
    names = [s.name for s in series]
    body: list[str] = [_y_title(y_label, HEIGHT - BOTTOM)] if y_label else []
    if not points:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text>')
        return _frame(title, body, names)
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
    return _frame(title, body, names)


def bars(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    x_label: str = "",
    y_label: str = "share of rows",
    edges: Sequence[float] | None = None,
) -> Markup:
    """Bars side by side per category, one colour per series; y ticks are percentages.

    With ``edges`` (the ``len(categories) - 1`` inner edges of numeric bins) the x axis
    labels the bin boundaries with the fewest digits that tell them apart. Otherwise each
    category is labelled, shortened, turned 45 degrees when the labels would not fit
    level, and thinned to every k-th when even turned they would touch.
    """
    n = max(len(categories), 1)
    inner = list(edges) if edges is not None and len(edges) == len(categories) - 1 else None
    names = [_short(c, 14) for c in categories]
    longest = max((len(t) for t in names), default=1) * CHAR
    turned = inner is None and longest + 4 > (WIDTH - LEFT - RIGHT) / n
    left = max(LEFT, int(0.71 * longest) + 4) if turned else LEFT
    bottom = 36 + int(0.71 * longest) if turned else BOTTOM
    height = HEIGHT - BOTTOM + bottom
    slot = (WIDTH - left - RIGHT) / n
    base, top = height - bottom, max([v for _, vs in series for v in vs] + [1e-9])
    body = [_y_title(y_label, base)]
    for t in ticks(0.0, top, 4):
        y = base - (base - TOP) * t / top
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
        )
        body.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{t * 100:.4g}%</text>')
    width = slot * 0.8 / max(len(series), 1)
    for i, category in enumerate(categories):
        for s, (name, values) in enumerate(series):
            value = values[i] if i < len(values) else 0.0
            h = (base - TOP) * value / top
            x = left + i * slot + slot * 0.1 + s * width
            body.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{COLORS[s % len(COLORS)]}"><title>{escape(category)}: {escape(name)} '
                f"{value:.1%}</title></rect>"
            )
    if inner is not None:
        texts = _round_labels(inner)
        widest = max((len(t) for t in texts), default=1) * CHAR + 6
        every = math.ceil(widest / slot)
        for i in range(0, len(texts), every):
            x = left + (i + 1) * slot
            body.append(
                f'<text class="xtick" x="{x:.1f}" y="{base + 14}" text-anchor="middle">'
                f"{escape(texts[i])}</text>"
            )
    else:
        every = math.ceil((TURNED_GAP if turned else longest + 6) / slot)
        for i in range(0, len(names), every):
            x, y = left + (i + 0.5) * slot, base + 12
            turn = f' transform="rotate(-45 {x:.1f} {y})" text-anchor="end"' if turned else ""
            anchor = "" if turned else ' text-anchor="middle"'
            body.append(
                f'<text class="xtick" x="{x:.1f}" y="{y}"{anchor}{turn}>{escape(names[i])}</text>'
            )
    body.append(
        f'<text x="{(left + WIDTH - RIGHT) / 2}" y="{height - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    return _frame(
        title, body, [name for name, _ in series], height=height, left=left, bottom=bottom
    )


def _round_labels(values: Sequence[float]) -> list[str]:
    """The shortest numbers (3 to 6 significant digits, whole numbers from 100 on: no
    exponents) that keep neighbours apart."""
    for digits in range(3, 7):
        texts = [f"{v:.0f}" if abs(v) >= 100 else f"{v:.{digits}g}" for v in values]
        if all(a != b for a, b in zip(texts, texts[1:], strict=False)):
            return texts
    return texts


def _y_title(text: str, base: float) -> str:
    mid = (TOP + base) / 2
    return (
        f'<text x="12" y="{mid:.1f}" transform="rotate(-90 12 {mid:.1f})" '
        f'text-anchor="middle">{escape(text)}</text>'
    )


def _frame(
    title: str,
    body: list[str],
    names: Sequence[str],
    *,
    height: int = HEIGHT,
    left: int = LEFT,
    bottom: int = BOTTOM,
) -> Markup:
    legend = "".join(
        f'<rect x="{left + 100 * i}" y="22" width="10" height="10" '
        f'fill="{COLORS[i % len(COLORS)]}"/>'
        f'<text x="{left + 100 * i + 14}" y="31">{escape(_short(name))}</text>'
        for i, name in enumerate(names[:5])
    )
    legend += f'<text x="{left}" y="14" class="title">{escape(title)}</text>'
    base = height - bottom
    axes = (
        f'<line x1="{left}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" class="axis"/>'
        f'<line x1="{left}" y1="{TOP}" x2="{left}" y2="{base}" class="axis"/>'
    )
    return Markup(
        f'<svg class="chart" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f"{legend}{axes}{''.join(body)}</svg>"
    )


def _short(name: str, limit: int = 16) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
