"""Bars side by side per category: a reference histogram against the current one."""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from modelyard.ui._chart_frame import (
    BOTTOM,
    CHAR,
    COLORS,
    GAP,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    TURNED_GAP,
    WIDTH,
    frame,
    short,
    ticks,
    y_title,
)


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
    series = list(series)[: len(COLORS)]  # a colour, and so a legend entry, for each
    n = max(len(categories), 1)
    inner = list(edges) if edges is not None and len(edges) == len(categories) - 1 else None
    names = [short(c, 14) for c in categories]
    longest = max((len(t) for t in names), default=1) * CHAR
    turned = inner is None and longest + 4 > (WIDTH - LEFT - RIGHT) / n
    left = max(LEFT, int(0.71 * longest) + 4) if turned else LEFT
    bottom = 36 + int(0.71 * longest) if turned else BOTTOM
    height = HEIGHT - BOTTOM + bottom
    slot = (WIDTH - left - RIGHT) / n
    base, top = height - bottom, max([v for _, vs in series for v in vs] + [1e-9])
    body = [y_title(y_label, base)]
    for t in ticks(0.0, top, 4):
        y = base - (base - TOP) * t / top
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
        )
        body.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{t * 100:.4g}%</text>')
    wide = slot * 0.8 / max(len(series), 1)
    for i, category in enumerate(categories):
        for s, (name, values) in enumerate(series):
            value = values[i] if i < len(values) else 0.0
            h = (base - TOP) * value / top
            x = left + i * slot + slot * 0.1 + s * wide
            body.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{wide:.1f}" height="{h:.1f}" '
                f'fill="{COLORS[s % len(COLORS)]}"><title>{escape(category)}: {escape(name)} '
                f"{value:.1%}</title></rect>"
            )
    if inner is not None:
        texts = _round_labels(inner)
        widest = max((len(t) for t in texts), default=1) * CHAR + GAP
        every = math.ceil(widest / slot)
        for i in range(0, len(texts), every):
            x = left + (i + 1) * slot
            body.append(
                f'<text class="xtick" x="{x:.1f}" y="{base + 14}" text-anchor="middle">'
                f"{escape(texts[i])}</text>"
            )
    else:
        every = math.ceil((TURNED_GAP if turned else longest + GAP) / slot)
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
    return frame(title, body, [name for name, _ in series], height=height, left=left, bottom=bottom)


def _round_labels(values: Sequence[float]) -> list[str]:
    """The shortest numbers (3 to 6 significant digits, whole numbers from 100 on: no
    exponents) that keep neighbours apart."""
    for digits in range(3, 7):
        texts = [f"{v:.0f}" if abs(v) >= 100 else f"{v:.{digits}g}" for v in values]
        if all(a != b for a, b in zip(texts, texts[1:], strict=False)):
            return texts
    return texts
