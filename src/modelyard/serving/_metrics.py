"""Prometheus metrics of one server (one registry per app, so tests never share counters).

With ``--workers N`` each process keeps its own registry in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up (prometheus-client's
multiprocess mode). Collectors computed at scrape time (``register``), such as the
monitoring gauges, are not in those files: the worker that answers emits them once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "modelyard_requests",
            "Prediction requests by model, version, variant and HTTP status code.",
            ["model", "version", "variant", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "modelyard_request_latency_seconds",
            "Time from request received to response ready.",
            ["model", "version", "variant"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelyard_batch_size_rows",
            "Rows per model call after adaptive batching.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelyard_queue_depth",
            "Requests waiting for a batch.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache = Counter(
            "modelyard_cache",
            "Prediction cache lookups per row, by result (hit or miss).",
            ["model", "result"],
            registry=r,
        )
        self.cache_errors = Counter(
            "modelyard_cache_errors",
            "Prediction cache calls that did not reach the cache (it was down or too slow): "
            "those rows were computed without it.",
            ["model", "operation"],
            registry=r,
        )
        self.load_seconds = Gauge(
            "modelyard_model_load_seconds",
            "Seconds the last load of each model version took.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.load_failures = Counter(
            "modelyard_model_load_failures",
            "Model versions that failed to load (the previous version kept serving).",
            ["model", "version"],
            registry=r,
        )
        self.features_missing = Counter(
            "modelyard_features_missing",
            "Online feature values missing or expired at request time.",
            ["model", "feature", "policy"],
            registry=r,
        )
        self.swaps = Counter(
            "modelyard_model_swaps",
            "Hot swaps of a served model to another version.",
            ["model"],
            registry=r,
        )
        self.requests_shed = Counter(
            "modelyard_requests_shed",
            'Requests a model did not take: refused (503: its queue was full; variant "" '
            "when refused on arrival, before routing) or not mirrored (a shadow candidate's "
            "queue was full).",
            ["model", "variant", "action"],
            registry=r,
        )
        self.auth_refusals = Counter(
            "modelyard_auth_refusals",
            "Requests refused before any route ran, by reason: 401 (missing, malformed, "
            "unknown, revoked, expired key), 403 (wrong_role, wrong_model, cross_origin, "
            "host_not_allowed), "
            "415 (unsupported_media_type) and 429 (rate_limited). Never labelled by key.",
            ["reason", "protocol"],
            registry=r,
        )
        self._shed_children: dict[tuple[str, str, str], Any] = {}
        self.collectors: list[Collector] = []
        # Gauges that only change by a read (a writer thread that stopped, a write that
        # hangs) are brought up to date here, so a scrape alone shows them.
        self.before_render: list[Callable[[], object]] = []

    def shed(self, model: str, variant: str, action: str) -> None:
        # Looked up once per label set: a refusal must stay cheap (``labels()`` takes a lock).
        key = (model, variant, action)
        child = self._shed_children.get(key)
        if child is None:
            child = self._shed_children[key] = self.requests_shed.labels(model, variant, action)
        child.inc()

    def register(self, collector: Collector) -> None:
        """Add a collector whose values are computed when ``/metrics`` is scraped."""
        self.collectors.append(collector)
        self.registry.register(collector)

    def render(self) -> bytes:
        """The exposition text; blocking (files, the database): call it off the event loop."""
        for refresh in self.before_render:
            refresh()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            for collector in self.collectors:
                combined.register(collector)
            return generate_latest(combined)
        return generate_latest(self.registry)
