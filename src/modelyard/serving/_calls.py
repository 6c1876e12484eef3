"""How a loaded version is called: on the event loop or in a thread, batched or not.

Decided once per version, at load, from timed calls on an example row (the logged
``input_example``, else a row built from the signature), unless the serve options fix it:

- **inline** (``inline = "auto"``): a call whose median single-row time is at most
  ``INLINE_MAX_MS`` (and whose batch, when batching, at most ``INLINE_BATCH_MAX_MS``)
  runs on the event loop. Handing it to a thread costs two thread wake-ups (about
  100 µs of latency on a small machine), more than such a model takes; while it runs
  the loop waits, which a call that short does not notice. Slower models run in the
  variant's own thread pool, so the loop keeps serving other models meanwhile.
- **batching** (``max_batch_size`` unset): on, with batches of up to ``AUTO_BATCH_ROWS``
  rows, when a call on ``PROBE_ROWS`` rows costs less than half as much per row as a
  single-row call; off otherwise, since then a batch saves nothing and only delays.

A version whose example call fails is served in the thread pool, unbatched: the timing
is a guess at what pays, never a condition for serving.

Models of the ``python`` flavor are the user's own code, which may have side effects (a
call to another service, a counter) or block: they are never called before a request
asks, so they run in the thread pool, unbatched, unless the serve options say otherwise.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from modelyard.contracts import RecordValidator, Schema
from modelyard.serving._openapi import example_record

logger = logging.getLogger("modelyard.serving")

INLINE_MAX_MS = 0.5
INLINE_BATCH_MAX_MS = 2.0
PROBE_ROWS = 32
AUTO_BATCH_ROWS = 64


@dataclass(frozen=True)
class CallPlan:
    """How one version is called, and the timings that decided it."""

    inline: bool
    max_batch_size: int
    single_ms: float | None = None
    batch_ms: float | None = None  # a call on PROBE_ROWS rows

    def describe(self) -> dict[str, Any]:
        return {
            "call": "inline" if self.inline else "thread pool",
            "max_batch_size": self.max_batch_size,
            "single_row_ms": self.single_ms,
            "probe_batch_ms": self.batch_ms,
        }


def plan_calls(
    predict: Callable[[dict[str, list[Any]]], Any],
    inputs: Schema,
    stored_example: list[dict[str, Any]] | None,
    *,
    inline: Literal["auto", "always", "never"],
    max_batch_size: int | None,
    user_code: bool = False,
) -> CallPlan:
    """Time ``predict`` on an example row and decide (see the module docstring)."""
    if user_code:
        return CallPlan(inline=inline == "always", max_batch_size=max_batch_size or 1)
    needs_timing = inline == "auto" or max_batch_size is None
    single = batch = None
    if needs_timing:
        try:
            record = example_record(inputs, stored_example)
            one = RecordValidator(inputs).validate_python(record)
            many = {name: values * PROBE_ROWS for name, values in one.items()}
            single = _median_ms(predict, one, 15)
            batch = _median_ms(predict, many, 5)
        except Exception as exc:  # a model that cannot take the example: no guess
            logger.warning(
                "timing call failed; serving in the thread pool, unbatched",
                extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
            return CallPlan(inline=inline == "always", max_batch_size=max_batch_size or 1)
    rows = max_batch_size
    if rows is None:
        assert single is not None and batch is not None
        rows = AUTO_BATCH_ROWS if batch < 0.5 * PROBE_ROWS * single else 1
    if inline == "auto":
        assert single is not None and batch is not None
        largest = batch * max(1.0, rows / PROBE_ROWS) if rows > 1 else single
        on_loop = single <= INLINE_MAX_MS and (rows == 1 or largest <= INLINE_BATCH_MAX_MS)
    else:
        on_loop = inline == "always"
    return CallPlan(on_loop, rows, single, batch)


def _median_ms(
    predict: Callable[[dict[str, list[Any]]], Any], columns: dict[str, list[Any]], n: int
) -> float:
    predict(columns)  # warm: first calls build caches (BLAS, feature-name checks)
    predict(columns)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        predict(columns)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 4)
