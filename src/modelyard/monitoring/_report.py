"""One monitoring page for a model version: drift, quality, latency and volume over a window.

``build_report`` gathers the data (a JSON-ready dict); ``render_html`` turns it into a
self-contained page that works offline: inline CSS, inline SVG, no script, no URL.
Every user string (column names, categories, variants, reasons) goes through
``html.escape``. ``write_report`` writes either form atomically.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow.compute as pc

from modelyard._files import atomic_write_text
from modelyard.backends.predictions import BATCH_VARIANT
from modelyard.errors import InvalidInputError
from modelyard.monitoring._sample import SampleSize
from modelyard.monitoring._svg import bars, lines
from modelyard.monitoring._window import comparable, reference_of, window_drift

if TYPE_CHECKING:
    from modelyard.backends.predictions import PredictionLog
    from modelyard.registry import Registry

MAX_BINS = 30  # categories past this many are left out of the histogram, not the table


def build_report(
    registry: Registry,
    ref: str,
    log: PredictionLog,
    window: timedelta,
    *,
    now: datetime | None = None,
    sample: SampleSize | None = None,
) -> dict[str, Any]:
    """Drift, quality per day, and latency and volume per hour of ``ref``'s traffic;
    drift and each day's quality say "not enough data" below ``sample``'s minimums."""
    until = now or datetime.now(UTC)
    since = until - window
    sample = sample or SampleSize()
    version, report = window_drift(registry, ref, log, window, now=until, min_rows=sample.min_rows)
    table = log.read(version.name, since=since)
    keep = pc.and_(
        pc.equal(table["version"], version.version),
        pc.and_(pc.greater_equal(table["ts"], since), pc.less(table["ts"], until)),
    )
    columns = ["request_id", "ts", "latency_ms", "variant"]
    traffic = table.filter(keep).select(columns).to_pandas()
    return {
        "model": version.ref,
        "window": str(window),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "drift": report.to_json_dict(),
        "quality": _quality(log, version.name, version.version, since, until, sample),
        **_hourly(traffic),
    }


def build_file_report(
    registry: Registry,
    ref: str,
    current: pd.DataFrame,
    source: str,
    *,
    sample: SampleSize | None = None,
) -> dict[str, Any]:
    """Drift of the rows of a file (``source``) against ``ref``'s reference profile: the
    same report as ``build_report`` without traffic, whose quality and latency a file
    cannot tell."""
    from modelyard.monitoring._drift import drift

    sample = sample or SampleSize()
    version, reference = reference_of(registry, ref)
    columns = [c for c in reference.columns if c in current.columns]
    if not columns:
        raise InvalidInputError(
            f"{source} has none of the model's input columns ({', '.join(reference.columns)}); "
            "pass a file of the model's inputs"
        )
    report = drift(comparable(reference, columns), current[columns], min_rows=sample.min_rows)
    return {
        "model": version.ref,
        "source": source,
        "drift": report.to_json_dict(),
        "quality": {
            "labelled": False,
            "note": "a file carries no labels: quality is measured on served traffic",
            "days": [],
        },
        "volume": [],
        "latency": [],
    }


def _hourly(traffic: pd.DataFrame) -> dict[str, Any]:
    """Predictions per hour (batch-scored ones too), and p50/p99 latency per hour over
    served requests (not rows)."""
    traffic = traffic.assign(hour=traffic["ts"].dt.floor("h"))
    served = traffic[traffic["variant"] != BATCH_VARIANT]
    requests = served.drop_duplicates("request_id")
    volume, latency = [], []
    for hour, group in traffic.groupby("hour", sort=True):
        stamp = pd.Timestamp(str(hour)).isoformat()
        volume.append({"hour": stamp, "predictions": len(group)})
        ms = requests.loc[requests["hour"] == hour, "latency_ms"].astype(float)
        if ms.empty:
            continue
        latency.append(
            {
                "hour": stamp,
                "requests": len(ms),
                "p50_ms": float(ms.quantile(0.5)),
                "p99_ms": float(ms.quantile(0.99)),
            }
        )
    return {"volume": volume, "latency": latency}


def _quality(
    log: PredictionLog,
    model: str,
    version: int,
    since: datetime,
    until: datetime,
    sample: SampleSize,
) -> dict[str, Any]:
    from modelyard.monitoring._quality import joined, quality

    frame = joined(log, model)
    if not frame.empty:
        frame = frame[
            (frame["version"] == version)
            & (frame["ts"] >= pd.Timestamp(since))
            & (frame["ts"] < pd.Timestamp(until))
        ]
    if frame.empty:
        return {
            "labelled": False,
            "note": "no labelled predictions in this window; send labels to POST /v1/feedback",
            "days": [],
        }
    days = []
    for day, group in frame.groupby(frame["ts"].dt.floor("D"), sort=True):
        try:
            rows = quality(group, min_labels=sample.min_labels)
        except InvalidInputError:  # pragma: no cover - groupby yields no empty group
            continue
        days += [{"day": pd.Timestamp(day).date().isoformat(), **r} for r in rows]
    return {"labelled": True, "note": "", "days": days}


def write_report(data: dict[str, Any], path: Path, fmt: Literal["html", "json"] = "html") -> None:
    """Write the report as HTML or JSON to ``path``: a temporary file, then a rename."""
    text = render_html(data) if fmt == "html" else json.dumps(data, indent=2)
    folder = path.resolve().parent
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder; create it or pick another -o path")
    atomic_write_text(path, text)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:left}tr.drifted td{background:#fde8e8}.yes{color:#b00;font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #eee;padding:4px}
.chart h3{font-size:1em;margin:0 0 4px}.note{color:#666;font-style:italic}
"""


def render_html(data: dict[str, Any], *, back: str | None = None, note: str = "") -> str:
    """The report as one self-contained HTML page. ``back``: where its "← dashboard" link
    goes when the dashboard serves it (a written file has no link, and no ``<link>``);
    ``note``: a line under the title (which window the dashboard chose, and why)."""
    drift = data["drift"]
    title = f"monitoring report: {data['model']}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Served, an empty icon spares the browser a request for /favicon.ico (a 404).
        '<link rel="icon" href="data:,">' if back is not None else "",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f'<p><a href="{escape(back)}">← dashboard</a></p>' if back is not None else "",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note" id="window-note">{escape(note)}</p>' if note else "",
        f"<p>{_compared(data)}; {drift['rows_current']} rows against "
        f"{drift['rows_reference']} reference rows.</p>",
        _drift_html(drift),
        _quality_html(data["quality"]),
        "" if "source" in data else _traffic_html(data),
        "</body></html>",
    ]
    return "\n".join(parts)


def _compared(data: dict[str, Any]) -> str:
    if "source" in data:  # a file against the reference (build_file_report)
        return f"the file {escape(data['source'])}"
    return f"window {escape(data['window'])}: {escape(data['since'])} to {escape(data['until'])}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _drift_html(drift: dict[str, Any]) -> str:
    if drift.get("status", "ok") != "ok":
        return f'<h2>Drift</h2><p class="note">{escape(drift["note"])}</p>'
    drifted = drift["drifted_columns"]
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "column",
            "kind",
            "PSI",
            "KS / JS",
            "p-value",
            "nulls Δ",
            "unseen",
            "drifted",
            "why",
        )
    )
    rows, charts = [], []
    for name, col in drift["columns"].items():
        m = col["metrics"]
        numeric = col["kind"] == "numeric"
        second = m.get("ks") if numeric else m.get("js")
        p_value = m.get("ks_p_value") if numeric else m.get("chi2_p_value")
        flag = '<span class="yes">yes</span>' if col["drifted"] else "no"
        rows.append(
            f'<tr class="{"drifted" if col["drifted"] else "ok"}"><td>{escape(name)}</td>'
            f"<td>{escape(col['kind'])}</td><td>{_num(m.get('psi'))}</td><td>{_num(second)}</td>"
            f"<td>{_num(p_value)}</td><td>{_num(m.get('null_rate_change'))}</td>"
            f"<td>{_num(m.get('unseen_share'))}</td><td>{flag}</td><td>{escape(col['reason'])}</td></tr>"
        )
        bins = list(col["bins"])[:MAX_BINS]
        chart = bars(
            f"{name}: reference vs current",
            bins,
            [("reference", col["reference"][:MAX_BINS]), ("current", col["current"][:MAX_BINS])],
        )
        mark = " (drifted)" if col["drifted"] else ""
        charts.append(
            f'<div class="chart"><h3>{escape(name)}{mark}</h3>{chart}'
            f"<div>nulls: {col['null_rate_reference']:.2%} reference, "
            f"{col['null_rate_current']:.2%} current</div></div>"
        )
    summary = ", ".join(escape(c) for c in drifted) or "none"
    return (
        f"<h2>Drift</h2><p>{len(drifted)} of {len(drift['columns'])} columns drifted: "
        f"{summary}</p><table><tr>{head}</tr>{''.join(rows)}</table>"
        f'<div class="charts">{"".join(charts)}</div>'
    )


def _quality_html(quality: dict[str, Any]) -> str:
    if not quality["labelled"]:
        return f'<h2>Quality</h2><p class="note">{escape(quality["note"])}</p>'
    days = quality["days"]
    names = sorted({k for d in days for k in d} - {"day", "version", "variant", "status", "note"})
    head = "".join(f"<th>{escape(h)}</th>" for h in ("day", "version", "variant", *names, "note"))
    body = "".join(
        f"<tr><td>{escape(d['day'])}</td><td>{d['version']}</td><td>{escape(d['variant'])}</td>"
        + "".join(f"<td>{_num(d.get(n))}</td>" for n in names)
        + f'<td class="note">{escape(d.get("note", ""))}</td></tr>'
        for d in days
    )
    charts = []
    labels = sorted({d["day"] for d in days})
    groups = sorted({(d["version"], d["variant"]) for d in days})
    for metric in (n for n in names if n != "rows"):
        series = [
            (
                f"v{v} {variant}",
                [_value(days, day, v, variant, metric) for day in labels],
            )
            for v, variant in groups
        ]
        charts.append(
            f'<div class="chart"><h3>{escape(metric)}</h3>{lines(metric, labels, series)}</div>'
        )
    return (
        f"<h2>Quality</h2><table><tr>{head}</tr>{body}</table>"
        f'<div class="charts">{"".join(charts)}</div>'
    )


def _value(days: list[dict[str, Any]], day: str, v: int, variant: str, metric: str) -> float | None:
    for d in days:
        if (d["day"], d["version"], d["variant"]) == (day, v, variant):
            value = d.get(metric)
            return None if value is None else float(value)
    return None


def _traffic_html(data: dict[str, Any]) -> str:
    # Every hour with predictions has a volume row; only those with served requests have
    # a latency row (batch-scored rows have no request latency): rows go by the hour.
    volume = data["volume"]
    latency = {r["hour"]: r for r in data["latency"]}
    served = [latency.get(v["hour"], {}) for v in volume]
    hours = [row["hour"][:13].replace("T", " ") + "h" for row in volume]
    latency_chart = lines(
        "latency per hour (ms)",
        hours,
        [("p50", [r.get("p50_ms") for r in served]), ("p99", [r.get("p99_ms") for r in served])],
    )
    volume_chart = lines(
        "predictions per hour",
        hours,
        [("predictions", [float(r["predictions"]) for r in volume])],
    )
    rows = "".join(
        f"<tr><td>{escape(v['hour'])}</td><td>{v['predictions']}</td>"
        f"<td>{r.get('requests', 0)}</td><td>{_ms(r.get('p50_ms'))}</td>"
        f"<td>{_ms(r.get('p99_ms'))}</td></tr>"
        for v, r in zip(volume, served, strict=True)
    )
    shown = (
        f'<div class="chart"><h3>latency p50 / p99 (ms)</h3>{latency_chart}</div>'
        if latency
        else '<p class="note">no served requests in this window (batch-scored rows only): '
        "latency is measured on served requests</p>"
    )
    return (
        f'<h2>Latency and volume</h2><div class="charts">{shown}'
        f'<div class="chart"><h3>predictions per hour</h3>{volume_chart}</div></div>'
        "<table><tr><th>hour (UTC)</th><th>predictions</th><th>requests</th>"
        f"<th>p50 ms</th><th>p99 ms</th></tr>{rows}</table>"
    )
