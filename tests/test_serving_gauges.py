"""Drift, quality and SLO results on the server's /metrics, read from the metadata store."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import text

import modelyard
from modelyard.monitoring import drift
from modelyard.monitoring._series import drift_values, record_metrics
from modelyard.serving import create_app
from registry_support import EXAMPLE, double, log_model

pytestmark = pytest.mark.anyio

HOUR = timedelta(hours=1)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def register(ws: modelyard.Workspace, name: str, versions: int = 1) -> None:
    for _ in range(versions):
        ws.registry.register(name, log_model(ws, double, EXAMPLE))
    ws.registry.set_alias(name, "production", 1)


@asynccontextmanager
async def serving(
    ws: modelyard.Workspace, refs: list[str]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(ws.registry, refs, poll_interval_s=0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def scrape(client: httpx.AsyncClient) -> list[Sample]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    return [s for f in text_string_to_metric_families(r.text) for s in f.samples]


def find(samples: list[Sample], name: str, **labels: str) -> dict[tuple[Any, ...], float]:
    """{sorted labels: value} of the ``name`` samples whose labels include ``labels``."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    }


def one(samples: list[Sample], name: str, **labels: str) -> float:
    found = find(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def churn_report() -> Any:
    """A real drift report: ``tenure`` shifted, ``plan.type`` (a dotted name) unchanged."""
    rng = np.random.default_rng(0)
    plans = rng.choice(["basic", "pro"], 2000)
    reference = pd.DataFrame({"tenure": rng.normal(0, 1, 2000), "plan.type": plans})
    current = pd.DataFrame({"tenure": rng.normal(2, 1, 2000), "plan.type": plans})
    return drift(reference, current)


async def test_drift_quality_and_slo_are_gauges_with_their_labels(
    workspace: modelyard.Workspace, churn_report: Any
) -> None:
    ws = workspace
    register(ws, "churn")
    drift_at, quality_at = T0, T0 + HOUR
    values = drift_values(churn_report)
    record_metrics(ws.metadata, "churn", values, window=HOUR, version=1, at=drift_at)
    quality = {"quality.roc_auc": 0.91, "quality.rows": 120.0, "quality.mae": None}
    record_metrics(
        ws.metadata, "churn", quality, window=HOUR, version=1, variant="production", at=quality_at
    )
    slo = {"slo.latency_p99_ms": 12.5, "slo.error_rate": float("nan")}
    record_metrics(ws.metadata, "churn", slo, window=HOUR, version=1, at=drift_at)

    async with serving(ws, ["churn@production"]) as (_, client):
        samples = await scrape(client)

    v1 = {"model": "churn", "version": "1"}
    assert one(samples, "modelyard_monitor_up") == 1
    assert one(samples, "modelyard_drift_share", **v1, variant="") == 0.5
    assert one(samples, "modelyard_drift_columns_drifted", **v1) == 1
    assert one(samples, "modelyard_drift_rows", **v1) == 2000
    assert one(samples, "modelyard_drift_detected", **v1, column="tenure") == 1
    assert one(samples, "modelyard_drift_detected", **v1, column="plan.type") == 0
    scores = find(samples, "modelyard_drift_score", **v1)
    expected = {k: v for k, v in values.items() if k.count(".") >= 2 and ".detected." not in k}
    assert len(scores) == len(expected) > 4
    for name, value in expected.items():
        _, stat, column = name.split(".", 2)
        got = one(samples, "modelyard_drift_score", **v1, column=column, statistic=stat)
        assert got == pytest.approx(value)
    assert one(samples, "modelyard_drift_score", column="tenure", statistic="psi") > 1
    labels = {**v1, "variant": "production"}
    assert one(samples, "modelyard_quality", **labels, metric="roc_auc") == 0.91
    assert one(samples, "modelyard_quality_rows", **labels) == 120
    assert find(samples, "modelyard_quality", metric="mae") == {}  # NULL: no data, no gauge
    assert one(samples, "modelyard_slo", **v1, metric="latency_p99_ms") == 12.5
    assert find(samples, "modelyard_slo", metric="error_rate") == {}  # NaN is stored as NULL
    last = one(samples, "modelyard_monitor_last_evaluation_timestamp_seconds", model="churn")
    assert last == quality_at.timestamp()


async def test_the_newest_value_wins_and_is_read_again_after_the_cache_expires(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    ws = sqlite_workspace
    register(ws, "churn")
    for i, share in enumerate([0.1, 0.2]):
        record_metrics(
            ws.metadata, "churn", {"drift.share": share}, window=HOUR, version=1, at=T0 + i * HOUR
        )

    async with serving(ws, ["churn@production"]) as (app, client):
        clock = app.state.monitor_gauges.clock = Clock()
        assert one(await scrape(client), "modelyard_drift_share") == 0.2
        record_metrics(ws.metadata, "churn", {"drift.share": 0.3}, window=HOUR, version=1)
        clock.now = 14.0  # within the 15 s cache: Prometheus scraping often costs no query
        assert one(await scrape(client), "modelyard_drift_share") == 0.2
        clock.now = 15.0
        samples = await scrape(client)
    assert one(samples, "modelyard_drift_share") == 0.3
    last = one(samples, "modelyard_monitor_last_evaluation_timestamp_seconds")
    assert abs(last - datetime.now(UTC).timestamp()) < 60


async def test_other_models_and_versions_not_served_stay_apart(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    ws = sqlite_workspace
    register(ws, "churn", versions=2)  # production -> 1
    register(ws, "fraud")
    register(ws, "ghost")
    share = {"drift.share": 0.25}
    record_metrics(ws.metadata, "churn", share, window=HOUR, version=1, at=T0)
    record_metrics(ws.metadata, "churn", {"drift.share": 0.75}, window=HOUR, version=2, at=T0)
    record_metrics(ws.metadata, "churn", {"drift.share": 0.5}, window=HOUR, at=T0)
    record_metrics(ws.metadata, "fraud", {"drift.share": 0.125}, window=HOUR, version=1, at=T0)
    record_metrics(ws.metadata, "ghost", {"drift.share": 1.0}, window=HOUR, version=1, at=T0)
    record_metrics(ws.metadata, "view:churn", {"drift.share": 1.0}, window=HOUR, at=T0)

    async with serving(ws, ["churn@production", "fraud/1"]) as (_, client):
        samples = await scrape(client)

    shares = {
        (s.labels["model"], s.labels["version"]): s.value
        for s in samples
        if s.name == "modelyard_drift_share"
    }
    # Version 2 of churn is not served here; a value recorded without a version is.
    assert shares == {("churn", "1"): 0.25, ("churn", ""): 0.5, ("fraud", "1"): 0.125}
    assert set(find(samples, "modelyard_monitor_last_evaluation_timestamp_seconds")) == {
        (("model", "churn"),),
        (("model", "fraud"),),
    }


async def test_a_metadata_failure_leaves_metrics_answering_without_the_gauges(
    sqlite_workspace: modelyard.Workspace, server_log: list[dict[str, Any]]
) -> None:
    ws = sqlite_workspace
    register(ws, "churn")
    record_metrics(ws.metadata, "churn", {"drift.share": 0.5}, window=HOUR, version=1, at=T0)

    async with serving(ws, ["churn@production"]) as (app, client):
        assert (await client.post("/v1/models/churn/predict", json={"a": 1.0})).status_code == 200
        with ws.metadata.write() as conn:
            conn.execute(text("DROP TABLE monitor_metrics"))
        clock = app.state.monitor_gauges.clock = Clock()
        clock.now = 1000.0
        first = await scrape(client)
        second = await scrape(client)

    for samples in (first, second):
        assert one(samples, "modelyard_requests_total", model="churn", code="200") == 1
        assert one(samples, "modelyard_monitor_up") == 0
        assert find(samples, "modelyard_drift_share") == {}
    # The failure is cached like a result: one attempt, one log line, per 15 s.
    [warning] = [line for line in server_log if "monitoring gauges skipped" in line["message"]]
    assert warning["level"] == "warning" and warning["models"] == ["churn"]
    assert "monitor_metrics" in warning["error"]


class ThreadSpy:
    """The metadata store, noting the thread of every read."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.threads: list[threading.Thread] = []

    def read(self) -> AbstractContextManager[Any]:
        self.threads.append(threading.current_thread())
        return self.store.read()  # type: ignore[no-any-return]


async def test_the_database_is_read_off_the_event_loop(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    ws = sqlite_workspace
    register(ws, "churn")
    record_metrics(ws.metadata, "churn", {"drift.share": 0.5}, window=HOUR, version=1, at=T0)

    async with serving(ws, ["churn@production"]) as (app, client):
        spy = app.state.monitor_gauges.store = ThreadSpy(ws.metadata)
        loop_thread = threading.current_thread()
        assert one(await scrape(client), "modelyard_drift_share") == 0.5

    assert spy.threads and all(t is not loop_thread for t in spy.threads)


@pytest.fixture
def multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    yield folder


async def test_with_several_workers_the_gauges_are_emitted_once(
    sqlite_workspace: modelyard.Workspace, multiprocess_dir: Path
) -> None:
    ws = sqlite_workspace
    register(ws, "churn")
    record_metrics(ws.metadata, "churn", {"drift.share": 0.5}, window=HOUR, version=1, at=T0)

    async with serving(ws, ["churn@production"]) as (_, client):
        r = await client.get("/metrics")

    assert r.text.count('modelyard_drift_share{model="churn"') == 1
    assert r.text.count("# TYPE modelyard_drift_share gauge") == 1
