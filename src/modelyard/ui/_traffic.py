"""The numbers of the Serving page: per model and variant, request rate, latency p50/p99,
error and refusal rates, rows per model call and queue depth.

On ``modelyard serve`` they come from the server's own Prometheus metrics (the text
``/metrics`` answers, summed over ``--workers`` as scraped), differenced between two
reads as Prometheus' ``rate`` and ``histogram_quantile`` would: the page needs no
Prometheus server. ``modelyard ui`` alone has no server to ask, so it reads the same
numbers from the prediction log (every answered and failed request with its latency).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

WINDOW_S = 30.0  # rates over the last half minute (at least two refreshes apart)
HISTORY = 150  # rate points kept for the chart (5 minutes at one read per 2 s)
BATCH = "batch"  # the variant of rows logged by batch scoring (``modelyard score``)

Pair = tuple[str, str]  # (model, variant)


@dataclass
class Totals:
    """Cumulative counts read from the metrics at ``at`` (monotonic seconds)."""

    at: float
    requests: dict[tuple[str, str, str], float] = field(default_factory=dict)  # +code
    versions: dict[Pair, str] = field(default_factory=dict)
    buckets: dict[Pair, dict[float, float]] = field(default_factory=dict)  # le -> count
    batch: dict[str, list[float]] = field(default_factory=dict)  # model -> [sum, count]
    queue: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrafficRow:
    model: str
    variant: str
    version: str
    total: float  # requests since the server started (or in the log's window)
    requests: float  # in the window
    rate: float | None  # per second (None: one read so far)
    share: float | None  # of the model's requests
    p50_ms: float | None
    p99_ms: float | None
    errors: float | None  # share of requests answered 5xx
    refused: float | None  # share answered 4xx (bad input, auth, shed with 429)
    batch_rows: float | None
    queue: float | None


def read_totals(text: str, at: float) -> Totals:
    out = Totals(at)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name == "modelyard_requests_total":
                key = (labels["model"], labels["variant"], labels["code"])
                out.requests[key] = out.requests.get(key, 0.0) + s.value
                out.versions[key[:2]] = labels["version"]  # the last version seen
            elif s.name == "modelyard_request_latency_seconds_bucket":
                pair = (labels["model"], labels["variant"])
                le = float(labels["le"])
                into = out.buckets.setdefault(pair, {})
                into[le] = into.get(le, 0.0) + s.value  # summed over versions
            elif s.name.startswith("modelyard_batch_size_rows_") and s.name[-4:] in (
                "_sum",
                "ount",
            ):
                pair_sum = out.batch.setdefault(labels["model"], [0.0, 0.0])
                pair_sum[0 if s.name.endswith("_sum") else 1] += s.value
            elif s.name == "modelyard_queue_depth":
                out.queue[labels["model"]] = out.queue.get(labels["model"], 0.0) + s.value
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile``: linear within the bucket the ``q``-th observation falls in."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    target = q * buckets[bounds[-1]]
    low, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= target:
            if math.isinf(le):
                return low
            inside = count - below
            return low + (le - low) * ((target - below) / inside if inside > 0 else 1.0)
        low, below = le, count
    return low


def difference(new: Totals, old: Totals | None) -> list[TrafficRow]:
    """Rows for the requests between ``old`` and ``new`` (since start when ``old`` is None)."""
    span = None if old is None else new.at - old.at
    pairs = sorted({k[:2] for k in new.requests} | set(new.buckets))
    per_model: dict[str, float] = {}
    counted: dict[Pair, tuple[float, float, float]] = {}
    for pair in pairs:
        total = errors = refused = 0.0
        for (model, variant, code), value in new.requests.items():
            if (model, variant) != pair:
                continue
            delta = value - (old.requests.get((model, variant, code), 0.0) if old else 0.0)
            total += delta
            errors += delta if code.startswith("5") else 0.0
            refused += delta if code.startswith("4") else 0.0
        counted[pair] = (total, errors, refused)
        if pair[1]:  # "": refused before a variant was picked (bad input): not in the split
            per_model[pair[0]] = per_model.get(pair[0], 0.0) + total
    rows = []
    for pair in pairs:
        total, errors, refused = counted[pair]
        buckets = _delta(new.buckets.get(pair, {}), old.buckets.get(pair, {}) if old else {})
        p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
        batch = _batch_mean(new, old, pair[0])
        rows.append(
            TrafficRow(
                model=pair[0],
                variant=pair[1],
                version=new.versions.get(pair, ""),
                total=sum(v for k, v in new.requests.items() if k[:2] == pair),
                requests=total,
                rate=None if not span else total / span,
                share=total / per_model[pair[0]] if pair[1] and per_model.get(pair[0]) else None,
                p50_ms=None if p50 is None else p50 * 1000,
                p99_ms=None if p99 is None else p99 * 1000,
                errors=errors / total if total else None,
                refused=refused / total if total else None,
                batch_rows=batch,
                queue=new.queue.get(pair[0]),
            )
        )
    return rows


def _delta(new: dict[float, float], old: dict[float, float]) -> dict[float, float]:
    return {le: count - old.get(le, 0.0) for le, count in new.items()}


def _batch_mean(new: Totals, old: Totals | None, model: str) -> float | None:
    total, calls = new.batch.get(model, [0.0, 0.0])
    if old is not None:
        before = old.batch.get(model, [0.0, 0.0])
        total, calls = total - before[0], calls - before[1]
    return total / calls if calls else None


class LiveTraffic:
    """The server's traffic over the last ``WINDOW_S``, from reads of its metrics.

    Every viewer shares the reads (at most one is kept a second), so how many people
    watch does not change the window. The window runs
    from the newest read at least ``WINDOW_S`` old (until there is one, from the first
    read) to now; ``window_s`` says how long it is.
    """

    source = "live, from this server's metrics"

    def __init__(self, render: Callable[[], bytes], clock: Callable[[], float] = time.monotonic):
        self._render = render
        self._clock = clock
        self._reads: deque[Totals] = deque()
        self.history: deque[tuple[float, dict[str, float]]] = deque(maxlen=HISTORY)
        self.window_s: float | None = None

    def rows(self) -> list[TrafficRow]:
        """Blocking (the metrics read files with --workers): call it off the event loop."""
        at = self._clock()
        now = read_totals(self._render().decode(), at)
        old = self._baseline(at)
        if not self._reads or at - self._reads[-1].at >= 1.0:
            self._reads.append(now)  # at most one a second, however many people look
        rows = difference(now, old)
        self.window_s = None if old is None else at - old.at
        if old is not None and (not self.history or at - self.history[-1][0] >= 1.0):
            rates: dict[str, float] = {}
            for r in rows:
                rates[r.model] = rates.get(r.model, 0.0) + (r.rate or 0.0)
            self.history.append((at, rates))
        return rows

    def _baseline(self, at: float) -> Totals | None:
        while len(self._reads) > 1 and at - self._reads[1].at >= WINDOW_S:
            self._reads.popleft()  # the next one is old enough to be the baseline
        if self._reads and at - self._reads[0].at >= 1.0:
            return self._reads[0]
        return None


class LoggedTraffic:
    """The same numbers from the prediction log, over the last ``window``."""

    def __init__(self, ws: Workspace, window: timedelta = timedelta(hours=1)) -> None:
        self.ws = ws
        self.window = window
        self.source = f"from the prediction log, last {_span(window)}"
        self.history: deque[tuple[float, dict[str, float]]] = deque()
        self.window_s: float | None = window.total_seconds()

    def rows(self) -> list[TrafficRow]:
        since = datetime.now(UTC) - self.window
        table = self.ws.predictions.read(errors=True, since=since)
        if table.num_rows == 0:
            return []
        wanted = [
            c
            for c in ("request_id", "ts", "model", "version", "variant", "latency_ms", "status")
            if c in table.column_names
        ]
        frame = table.select(wanted).to_pandas()
        frame = frame[frame["ts"] >= _like(since, frame["ts"])]
        frame = frame.drop_duplicates("request_id")  # one row per request, not per input row
        keys = ["model", "variant", "version"]
        return [_logged_row(key, group, frame, self.window) for key, group in frame.groupby(keys)]


def _logged_row(key: Any, group: Any, frame: Any, window: timedelta) -> TrafficRow:
    model, variant, version = key
    status = group["status"].fillna(200) if "status" in group else None
    total = float(len(group))
    batch = variant == BATCH  # scored files: no traffic split, and a chunk's latency
    of_model = float(((frame["model"] == model) & (frame["variant"] != BATCH)).sum())
    latency = group["latency_ms"].dropna() if "latency_ms" in group and not batch else None
    return TrafficRow(
        model=str(model),
        variant=str(variant),
        version=str(version),
        total=total,
        requests=total,
        rate=total / window.total_seconds(),
        share=total / of_model if of_model and not batch else None,
        p50_ms=float(latency.quantile(0.5)) if latency is not None and len(latency) else None,
        p99_ms=float(latency.quantile(0.99)) if latency is not None and len(latency) else None,
        errors=float((status >= 500).mean()) if status is not None else None,
        refused=float(((status >= 400) & (status < 500)).mean()) if status is not None else None,
        batch_rows=None,
        queue=None,
    )


def _like(when: datetime, column: Any) -> Any:
    """``when`` comparable with a timestamp column, which may be naive UTC."""
    import pandas as pd

    stamp = pd.Timestamp(when)
    return stamp.tz_localize(None) if getattr(column.dt, "tz", None) is None else stamp


def _span(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} hour" + ("" if hours == 1 else "s")
