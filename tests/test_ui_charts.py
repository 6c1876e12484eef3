"""The charts' layout, read back from their SVG: every series drawn is named in the legend,
legend entries and x tick labels keep apart by their estimated widths, one point gets a
sensible axis, and the monitoring charts pick and split their metrics. Dashboard charts
(``ui/_charts.py``) and the offline report's (``monitoring/_svg.py``) alike."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import modelyard
from modelyard.monitoring import SLO_METRICS
from modelyard.monitoring._svg import bars as report_bars
from modelyard.monitoring._svg import lines as report_lines
from modelyard.ui._charts import Series, bars, lines, scatter
from modelyard.ui._monitor_pages import SLO_CHARTS, history_charts
from ui_support import get

CHAR = 6.2  # px a character at the charts' 10 px font, as the charts estimate it
WIDTH = 560
T0 = datetime(2024, 12, 4, 6, tzinfo=UTC)

LEGEND = re.compile(
    r'<g class="legend"><rect x="([\d.]+)" y="(\d+)"[^>]*fill="(#\w+)"/>'
    r'<text x="([\d.]+)" y="\d+">([^<]*)</text></g>'
)


def legend(svg: str) -> list[tuple[float, int, str, float, str]]:
    """(key x, row y, colour, label x, label) per legend entry."""
    return [
        (float(kx), int(y), color, float(tx), html.unescape(text))
        for kx, y, color, tx, text in LEGEND.findall(svg)
    ]


def drawn(svg: str) -> list[tuple[str, str]]:
    """(colour, name) of each series a dashboard chart draws."""
    found = re.findall(r'<g class="series" stroke="(#\w+)"[^>]*><title>([^<]*)</title>', svg)
    return [(color, html.unescape(name)) for color, name in found]


def xticks(svg: str) -> list[tuple[float, str]]:
    found = re.findall(r'<text class="xtick" x="([\d.]+)"[^>]*>([^<]*)</text>', svg)
    return [(float(x), html.unescape(text)) for x, text in found]


def assert_legend_apart(svg: str, width: float) -> None:
    entries = legend(svg)
    for row in {y for _, y, _, _, _ in entries}:
        line = sorted((kx, tx, text) for kx, y, _, tx, text in entries if y == row)
        for (_, tx, text), (next_key, _, _) in zip(line, line[1:], strict=False):
            assert tx + len(text) * CHAR <= next_key, f"{text!r} runs into the next entry"
        assert all(tx + len(text) * CHAR <= width for _, tx, text in line), "past the edge"


def assert_level_ticks_apart(svg: str) -> list[tuple[float, str]]:
    found = xticks(svg)
    assert len(found) >= 2
    for (a, left), (b, right) in zip(found, found[1:], strict=False):
        assert b - a >= (len(left) + len(right)) * CHAR / 2, f"{left!r} overlaps {right!r}"
    return found


def test_every_drawn_series_has_its_legend_entry_in_its_colour() -> None:
    many = [Series(f"series number {i}", [(0, i), (1, i + 1)]) for i in range(9)]
    svg = lines("nine", many)

    series, keys = drawn(svg), legend(svg)
    assert len(series) == 7 and "(first 7 of 9)" in svg  # a colour each, none repeated
    assert len({color for color, _ in series}) == 7
    named = {(color, text) for _, _, color, _, text in keys}
    for color, name in series:
        assert (color, name[:15] + "…" if len(name) > 16 else name) in named
    histogram = bars("b", ["x", "y"], [(f"variant {i}", [0.5, 0.5]) for i in range(9)])
    bar_colors = set(re.findall(r'<rect[^>]*fill="(#\w+)"><title', histogram))
    assert {color for _, _, color, _, _ in legend(histogram)} == bar_colors


def test_legend_entries_are_as_wide_as_their_labels_and_wrap() -> None:
    long = [Series("a very long metric", [(0, 1), (1, 2)]) for _ in range(6)]
    short = lines("short", [Series("a", [(0, 1), (1, 2)]), Series("bb", [(0, 2), (1, 3)])])
    wrapped = lines("long", long)

    assert_legend_apart(short, WIDTH)
    assert_legend_apart(wrapped, WIDTH)
    assert len({y for _, y, _, _, _ in legend(wrapped)}) == 2, "six long labels need two rows"
    assert 'height="264"' in wrapped and "translate(0 14)" in wrapped, "the chart grows a row"
    report = report_lines("r", ["a", "b"], [(f"a long variant {i}", [1.0, 2.0]) for i in range(6)])
    assert_legend_apart(report, 520)
    assert len({y for _, y, _, _, _ in legend(report)}) >= 2


def test_time_axes_label_dates_and_times_that_do_not_overlap() -> None:
    start = T0.timestamp()
    for hours in (1, 6, 30, 24 * 30):
        points = [(start + hours * 3600 * i / 20, float(i)) for i in range(21)]
        svg = lines("t", [Series("a", points)], "time (UTC)", time_axis=True)
        found = assert_level_ticks_apart(svg)
        assert all(re.fullmatch(r"\d\d-\d\d( \d\d:\d\d)?", text) for _, text in found), found
    numbers = lines("n", [Series("a", [(123456.789 * i, i) for i in range(5)])])
    assert_level_ticks_apart(numbers)


def test_one_point_sits_mid_axis_on_a_sensible_range() -> None:
    one = lines("t", [Series("p99", [(T0.timestamp(), 80.0)])], "time (UTC)", time_axis=True)
    [(cx, cy)] = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', one)
    assert abs(float(cx) - (56 + WIDTH - 12) / 2) < 1 and abs(float(cy) - (44 + 214) / 2) < 1
    assert {text for _, text in xticks(one)} >= {"12-04 06:00"}  # times around it, not 719
    step = lines("loss", [Series("loss", [(720.0, 0.5)])])
    assert all(648 <= float(t) <= 792 for _, t in xticks(step))
    labels = re.findall(r'text-anchor="end">([^<]*)</text>', step)
    assert all(0.4 <= float(t) <= 0.6 for t in labels), labels
    rate = lines("errors", [Series("error_rate", [(T0.timestamp(), 0.0)])], time_axis=True)
    rates = re.findall(r'text-anchor="end">([^<]*)</text>', rate)
    assert rates and all(0 <= float(t) <= 1 for t in rates), "no negative share of requests"


def test_scatter_points_keep_off_the_axes() -> None:
    svg = scatter("acc by C", [Series(f"r{i}", [(0.1 * i, 0.8 + 0.1 * i)]) for i in range(3)], "C")
    for cx, cy in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg):
        assert 56 + 10 < float(cx) < WIDTH - 12 - 10 and 44 + 5 < float(cy) < 214 - 5


def test_the_drift_chart_shows_the_columns_with_the_highest_psi() -> None:
    rows = [
        {"metric": f"drift.psi.{c}", "value": value, "at": T0 + timedelta(hours=h)}
        for h in range(3)
        for c, value in {**{f"a{i}": 0.01 for i in range(8)}, "zz_drifted": 0.9}.items()
    ]
    [chart] = history_charts(rows)
    assert "top 7 of 9 columns by latest PSI" in chart
    assert drawn(chart)[0] == ("#4c78a8", "zz_drifted")


def test_slo_values_are_charted_by_unit() -> None:
    assert set(SLO_CHARTS) == set(SLO_METRICS), "each recorded SLO value has its chart"
    rows = [
        {"metric": f"slo.{m}", "value": 1.0 + h, "at": T0 + timedelta(hours=h)}
        for h in range(2)
        for m in SLO_METRICS
    ]
    charts = history_charts(rows)
    titles = [re.search(r'class="title">([^<]*)<', c)[1] for c in charts]  # type: ignore[index]
    assert titles == ["Latency", "Error rates", "Traffic", "Feature freshness"]
    assert {n for _, n in drawn(charts[0])} == {"latency_p50_ms", "latency_p99_ms"}
    assert {n for _, n in drawn(charts[1])} == {"error_rate", "client_error_rate"}
    assert "hours since" not in "".join(charts)


def test_report_histograms_shorten_turn_and_thin_their_labels() -> None:
    categories = [f"a long category name {i}" for i in range(38)]
    svg = report_bars("city", categories, [("reference", [1 / 38] * 38), ("current", [0.0] * 38)])

    found = xticks(svg)
    assert 0 < len(found) < len(categories) and "rotate(-45" in svg
    assert all(len(text) <= 14 for _, text in found)
    assert min(b - a for (a, _), (b, _) in zip(found, found[1:], strict=False)) >= 16
    y_labels = re.findall(r'text-anchor="end">([\d.]+)</text>', svg)
    assert len(y_labels) >= 3, "the y axis has round ticks, not just its top"
    few = report_bars("c", ["a", "b", "c"], [("reference", [0.2, 0.3, 0.5])])
    assert [t for _, t in xticks(few)] == ["a", "b", "c"] and "rotate" not in few


def test_report_histograms_of_numbers_label_the_bin_edges() -> None:
    edges = [10.485 + 0.4567 * i for i in range(29)]
    lows, highs = [float("-inf"), *edges], [*edges, float("inf")]
    bins = [f"[{a}, {b})" for a, b in zip(lows, highs, strict=True)]
    svg = report_bars("bmi", bins, [("reference", [1 / 30] * 30)])

    found = assert_level_ticks_apart(svg)
    assert "rotate" not in svg and len(found) < len(edges)
    assert all(len(text) <= 6 and float(text) == float(text) for _, text in found)


def test_a_report_line_of_one_day_is_one_centred_point() -> None:
    svg = report_lines("roc_auc", ["2024-12-04"], [("v1 default", [0.9])])
    [(cx, _)] = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg)
    assert abs(float(cx) - (44 + 520 - 8) / 2) < 1
    assert [t for _, t in xticks(svg)] == ["2024-12-04"], "one label, not the same twice"
    hours = [f"2024-12-04 {h:02d}h" for h in range(24)]
    day = report_lines("latency", hours, [("p50", [float(h) for h in range(24)])])
    assert 2 <= len(assert_level_ticks_apart(day)) < 24


def test_a_metric_logged_once_is_a_value_not_a_chart(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    ws = sqlite_workspace
    with ws.start_run("once") as run:
        for step in range(3):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metric("accuracy", 0.9)
    [page] = get(ws, f"/ui/runs/{run.run_id}")
    charts: list[Any] = re.findall(r'<svg class="chart"[^>]*aria-label="([^"]*)"', page.text)
    assert charts == ["loss"] and "<th>accuracy</th>" in page.text
