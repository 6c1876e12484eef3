"""Tiny inline SVG charts for the offline monitoring report: no plotting library, no JS.

Every label passes through ``html.escape``: column names, categories and variants are
user strings and end up inside the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")
WIDTH, HEIGHT, PAD = 520, 180, 36


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _frame(title: str, body: list[str], legend: Sequence[str]) -> str:
    keys = "".join(
        f'<rect x="{PAD + 110 * i}" y="4" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>'
        f'<text x="{PAD + 110 * i + 14}" y="13">{escape(name[:16])}</text>'
        for i, name in enumerate(legend)
    )
    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" font-size="10" font-family="sans-serif">'
        f"<title>{escape(title)}</title>{keys}{''.join(body)}"
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 8}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        "</svg>"
    )


def bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Side-by-side bars per label, one colour per series (e.g. reference vs current)."""
    top = max([v for _, values in series for v in values] + [1e-12])
    plot_w, plot_h = WIDTH - PAD - 8, HEIGHT - 2 * PAD + 12
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * 0.8 / max(len(series), 1)
    body = [f'<text x="2" y="{PAD - 2}">{_fmt(top)}</text>']
    for i, label in enumerate(labels):
        x0 = PAD + i * slot + slot * 0.1
        for s, (name, values) in enumerate(series):
            value = values[i] if i < len(values) else 0.0
            h = plot_h * value / top
            body.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[s % len(COLORS)]}">'
                f"<title>{escape(label)} {escape(name)}: {_fmt(value)}</title></rect>"
            )
        if len(labels) <= 12:
            tick = escape(label[:14])
            body.append(f'<text x="{x0:.1f}" y="{HEIGHT - PAD + 12}" font-size="8">{tick}</text>')
    return _frame(title, body, [name for name, _ in series])


def lines(
    title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]]
) -> str:
    """A line per series over the x labels (e.g. hours); gaps where a value is None."""
    values = [v for _, vs in series for v in vs if v is not None]
    top = max(values + [1e-12])
    plot_w, plot_h = WIDTH - PAD - 8, HEIGHT - 2 * PAD + 12
    step = plot_w / max(len(labels) - 1, 1)
    body = [f'<text x="2" y="{PAD - 2}">{_fmt(top)}</text>']
    for s, (name, vs) in enumerate(series):
        color = COLORS[s % len(COLORS)]
        points = [
            (PAD + i * step, HEIGHT - PAD - plot_h * v / top, v)
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
    if labels:
        body.append(f'<text x="{PAD}" y="{HEIGHT - PAD + 12}">{escape(labels[0])}</text>')
        body.append(
            f'<text x="{WIDTH - 8}" y="{HEIGHT - PAD + 12}" text-anchor="end">'
            f"{escape(labels[-1])}</text>"
        )
    return _frame(title, body, [name for name, _ in series])
