"""Back-end faults, injected by a TCP proxy (tests/fault_proxy.py) in front of the real
Redis and PostgreSQL: the server keeps answering the way a user expects while a back end
is down (connections refused) or a black hole (accepted, never answered), and recovers
without a restart once it is back.

- online feature store: 503 ``online_store_unavailable`` (fast, never a hang), or the
  declared defaults; ``/readyz`` is red while a served model needs the store;
- prediction cache: fails open, counted in ``modelyard_cache_errors_total``;
- metadata database: serving goes on and ``/readyz`` stays 200 ``degraded`` (an outage
  every replica shares must not drain them all); a hang is reported within the timeout.

Redis is shared with other tests: every key this module writes has a unique name.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

import modelyard
from fault_proxy import FaultProxy
from modelyard.backends.redis_options import READ_TIMEOUT_S
from modelyard.errors import OnlineStoreUnavailableError
from modelyard.features import Entity, FeatureService, FeatureView, FrameSource
from modelyard.registry import FeatureBinding
from modelyard.serving import ServeOptions, create_app
from modelyard.serving._cache import CACHE_READ_TIMEOUT_S

pytestmark = pytest.mark.anyio

READYZ_BUDGET_S = 2.5  # /readyz answers within about two seconds, whatever hangs
SLACK_S = 1.5  # a loaded CI machine: time on top of a timeout before we call it a hang


def add_rating(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"y": frame["a"] + frame["rating"]})


def double(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"y": frame["a"] * 2})


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", 6379) as proxy:
        yield proxy


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[tuple[FaultProxy, str]]:
    """A proxy in front of PostgreSQL and ``pg_url`` (its private schema) through it."""
    with FaultProxy("127.0.0.1", 5432) as proxy:
        yield proxy, pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")


def register(
    ws: modelyard.Workspace, name: str, model: Any, example: pd.DataFrame, **kw: Any
) -> None:
    with ws.start_run(name) as run:
        logged = ws.registry.log_model(run, model, input_example=example)
    version = ws.registry.register(name, logged, **kw).version
    ws.registry.set_alias(name, "production", version)


@asynccontextmanager
async def serving(
    ws: modelyard.Workspace, models: Sequence[str | ServeOptions], **kwargs: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(ws.registry, models, poll_interval_s=0, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def metric(client: httpx.AsyncClient, sample: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    r = await client.request(method, url, **kw)
    return r, time.perf_counter() - started


async def eventually(check: Any, timeout_s: float = 10.0) -> Any:
    """Poll the async ``check`` until it returns something true (recovery takes a probe)."""
    import anyio

    deadline = time.monotonic() + timeout_s
    while True:
        got = await check()
        if got or time.monotonic() > deadline:
            return got
        await anyio.sleep(0.2)


# -- the online feature store -------------------------------------------------------------------
@pytest.fixture
def feature_ws(
    tmp_path: Path, redis_proxy: FaultProxy
) -> Iterator[tuple[modelyard.Workspace, str]]:
    """A workspace whose online store is Redis behind the proxy; two models read a rating:
    ``strict`` rejects a missing rating, ``lenient`` serves the declared default 0.5."""
    ws = modelyard.Workspace.init(tmp_path / "ws", online_url=redis_proxy.url("redis", "/15"))
    view_name = f"rating_{uuid.uuid4().hex[:10]}"  # Redis is shared
    patient = Entity("patient", {"patient_id": "int64"})
    view = FeatureView(
        view_name,
        entity=patient,
        source=FrameSource(
            pd.DataFrame(
                {
                    "patient_id": [1, 2],
                    "rating": [10.0, 20.0],
                    "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC"),
                }
            )
        ),
        features={"rating": "float64"},
    )
    ws.features.apply([patient, view, FeatureService("ratings", [view])])
    ws.features.materialize(datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    example = pd.DataFrame({"a": [1.0], "rating": [2.0]})
    register(ws, "strict", add_rating, example, features=FeatureBinding("ratings"))
    lenient = FeatureBinding("ratings", on_missing="default", defaults={"rating": 0.5})
    register(ws, "lenient", add_rating, example, features=lenient)
    try:
        yield ws, view_name
    finally:
        redis_proxy.set_mode("up")
        ws.online.drop(f"{view_name}__v1")
        ws.close()


async def test_online_store_down_or_hanging_is_a_fast_503_and_recovers(
    feature_ws: tuple[modelyard.Workspace, str],
    redis_proxy: FaultProxy,
    server_log: list[dict[str, Any]],
) -> None:
    ws, _ = feature_ws
    body = {"patient_id": 2, "a": 1.0}
    async with serving(ws, ["strict@production", "lenient@production"], features=ws.features) as (
        _,
        client,
    ):
        r = await client.post("/v1/models/strict/predict", json=body)
        assert r.status_code == 200 and r.json()["prediction"] == {"y": 21.0}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert ready.json()["checks"]["online_store"] == {"ok": True, "required": True}

        for mode, budget in (("down", SLACK_S), ("blackhole", READ_TIMEOUT_S + SLACK_S)):
            redis_proxy.set_mode(mode)  # type: ignore[arg-type]
            r, took = await timed(client, "POST", "/v1/models/strict/predict", json=body)
            assert r.status_code == 503, (mode, r.text)
            assert r.json()["code"] == "online_store_unavailable"
            assert "online store" in r.json()["message"] and r.json()["request_id"]
            assert took < budget, (mode, took)
            # Meanwhile more requests fail at once: they do not each wait for the timeout.
            r, took = await timed(client, "POST", "/v1/models/strict/predict", json=body)
            assert r.status_code == 503 and took < SLACK_S, (mode, took)
            # The model that declared a default keeps answering, with the default.
            r = await client.post("/v1/models/lenient/predict", json=body)
            assert r.status_code == 200 and r.json()["prediction"] == {"y": 1.5}
            ready, took = await timed(client, "GET", "/readyz")
            assert took < READYZ_BUDGET_S, (mode, took)
            assert ready.status_code == 503, (mode, ready.json())
            assert (await client.get("/v2/health/ready")).status_code == 503  # OIP agrees
            check = ready.json()["checks"]["online_store"]
            assert check["ok"] is False and check["required"] is True and check["error"]
            redis_proxy.set_mode("up")

            async def answers() -> bool:
                r = await client.post("/v1/models/strict/predict", json=body)
                return r.status_code == 200 and r.json()["prediction"] == {"y": 21.0}

            assert await eventually(answers), f"no recovery after {mode}"

            async def ready_again() -> bool:
                # A probe sent during the black hole may still be waiting on its read
                # timeout; readiness turns green once a probe gets through.
                return (await client.get("/readyz")).status_code == 200

            assert await eventually(ready_again), f"/readyz stayed red after {mode}"

        defaults = await metric(
            client, "modelyard_features_missing_total", model="lenient", policy="default"
        )
        assert defaults >= 2  # each answer from defaults is counted as missing values
        warned = [x for x in server_log if x["message"] == "online store unavailable"]
        assert warned and all(x["level"] == "warning" for x in warned)
        assert len(warned) <= 4  # once per outage and model, not once per request


async def test_only_models_that_need_the_online_store_make_readiness_red(
    feature_ws: tuple[modelyard.Workspace, str], redis_proxy: FaultProxy
) -> None:
    ws, _ = feature_ws
    async with serving(ws, ["lenient@production"], features=ws.features) as (_, client):
        redis_proxy.set_mode("down")
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["online_store"]["required"] is False
        r = await client.post("/v1/models/lenient/predict", json={"patient_id": 1, "a": 1.0})
        assert r.status_code == 200 and r.json()["prediction"] == {"y": 1.5}


def test_the_online_store_api_raises_a_typed_error_within_the_timeout(
    feature_ws: tuple[modelyard.Workspace, str], redis_proxy: FaultProxy
) -> None:
    ws, _ = feature_ws
    keys = {"patient_id": [1]}
    assert ws.features.get_online("ratings", keys).values["rating"] == [10.0]
    redis_proxy.set_mode("blackhole")
    started = time.perf_counter()
    with pytest.raises(OnlineStoreUnavailableError, match="cannot reach the online store"):
        ws.features.get_online("ratings", keys)
    assert time.perf_counter() - started < READ_TIMEOUT_S + SLACK_S
    redis_proxy.set_mode("up")
    assert ws.features.get_online("ratings", keys).values["rating"] == [10.0]  # same client


# -- the prediction cache -----------------------------------------------------------------------
async def test_redis_cache_fails_open_is_counted_and_is_used_again_once_back(
    sqlite_workspace: modelyard.Workspace,
    redis_proxy: FaultProxy,
    redis_url: str,
    server_log: list[dict[str, Any]],
) -> None:
    import redis

    ws = sqlite_workspace
    name = f"cached-{uuid.uuid4().hex[:8]}"  # Redis is shared
    register(ws, name, double, pd.DataFrame({"a": [1.0]}))
    opts = ServeOptions(
        ref=f"{name}@production", cache="redis", cache_url=redis_proxy.url("redis", "/15")
    )
    url = f"/v1/models/{name}/predict"
    try:
        async with serving(ws, [opts]) as (_, client):
            assert (await client.post(url, json={"a": 1.0})).json()["prediction"] == {"y": 2.0}
            assert (await client.post(url, json={"a": 1.0})).json()["prediction"] == {"y": 2.0}
            assert await metric(client, "modelyard_cache_total", model=name, result="hit") == 1

            budgets = {"down": SLACK_S, "blackhole": 2 * CACHE_READ_TIMEOUT_S + SLACK_S}
            for mode, budget in budgets.items():
                errors_before = await metric(client, "modelyard_cache_errors_total", model=name)
                redis_proxy.set_mode(mode)  # type: ignore[arg-type]
                for a in (3.0, 4.0):
                    r, took = await timed(client, "POST", url, json={"a": a})
                    assert r.status_code == 200, (mode, r.text)
                    assert r.json()["prediction"] == {"y": 2 * a}
                    assert took < budget, (mode, took)  # a get and a put at most time out
                errors = await metric(client, "modelyard_cache_errors_total", model=name)
                assert errors >= errors_before + 2, mode
                ready = await client.get("/readyz")
                assert ready.status_code == 200 and ready.json()["status"] == "degraded"
                assert ready.json()["checks"]["cache"]["ok"] is False
                redis_proxy.set_mode("up")

                hits = await metric(client, "modelyard_cache_total", model=name, result="hit")

                async def cached_again(hits: float = hits) -> bool:
                    await client.post(url, json={"a": 1.0})
                    now = await metric(client, "modelyard_cache_total", model=name, result="hit")
                    return now > hits

                assert await eventually(cached_again), f"cache not used again after {mode}"
                ready = await client.get("/readyz")
                assert ready.status_code == 200 and ready.json()["status"] == "ready"
        warned = [x for x in server_log if x["message"] == "prediction cache unavailable"]
        assert len(warned) == 2  # one per outage, not one per request
        assert len([x for x in server_log if x["message"] == "prediction cache is back"]) == 2
    finally:
        store = redis.Redis.from_url(redis_url)
        for key in store.scan_iter(f"modelyard:pred:{name}:*"):
            store.delete(key)
        store.close()


# -- the metadata database ----------------------------------------------------------------------
async def test_metadata_outage_keeps_serving_and_readiness_green_but_degraded(
    tmp_path: Path, pg_proxy: tuple[FaultProxy, str]
) -> None:
    proxy, url = pg_proxy
    ws = modelyard.Workspace.init(tmp_path / "ws", metadata_url=url)
    try:
        register(ws, "steady", double, pd.DataFrame({"a": [1.0]}))
        async with serving(ws, ["steady@production"]) as (app, client):

            async def ready_again() -> bool:
                ready = await client.get("/readyz")
                return ready.status_code == 200 and ready.json()["status"] == "ready"

            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            assert ready.json()["checks"]["metadata"] == {"ok": True, "required": False}

            proxy.set_mode("down")
            assert not await app.state.pool.refresh()  # the alias cannot be followed ...
            r = await client.post("/v1/models/steady/predict", json={"a": 2.0})
            assert r.status_code == 200 and r.json()["prediction"] == {"y": 4.0}
            ready, took = await timed(client, "GET", "/readyz")
            assert took < READYZ_BUDGET_S
            # ... yet this replica answers predictions: it must stay in the load balancer.
            assert ready.status_code == 200, ready.json()
            assert ready.json()["status"] == "degraded"
            check = ready.json()["checks"]["metadata"]
            assert check["ok"] is False and check["required"] is False and check["error"]
            model = ready.json()["models"]["steady"]
            assert model["ready"] is True and "cannot resolve" in model["warning"]

            proxy.set_mode("up")
            assert await eventually(ready_again)
            await app.state.pool.refresh()
            # Now a connection sits idle in the pool, as on any server that has been up a
            # while: whatever takes it first is stuck on the black hole's silence.
            proxy.set_mode("blackhole")
            # /metrics reads the monitoring gauges from the database: it must not hang.
            app.state.monitor_gauges.ttl_s = 0  # every scrape reads
            for _ in range(2):
                started = time.perf_counter()
                assert await metric(client, "modelyard_monitor_up") == 0
                assert time.perf_counter() - started < 2.0 + SLACK_S
            assert await metric(client, "modelyard_requests_total", model="steady") >= 1
            for _ in range(2):  # the second call finds the first probe still hanging
                ready, took = await timed(client, "GET", "/readyz")
                assert took < READYZ_BUDGET_S, took
                assert ready.status_code == 200 and ready.json()["status"] == "degraded"
                assert ready.json()["checks"]["metadata"]["ok"] is False
            r = await client.post("/v1/models/steady/predict", json={"a": 2.0})
            assert r.status_code == 200 and r.json()["prediction"] == {"y": 4.0}

            proxy.set_mode("up")
            assert await eventually(ready_again, timeout_s=15)

            async def gauges_read() -> bool:
                return await metric(client, "modelyard_monitor_up") == 1

            assert await eventually(gauges_read)
            assert not await app.state.pool.refresh()  # alias following works again
            assert "warning" not in (await client.get("/readyz")).json()["models"]["steady"]
    finally:
        proxy.set_mode("up")
        ws.close()


def test_postgres_connections_have_timeouts_and_keep_the_url_options(
    pg_proxy: tuple[FaultProxy, str],
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from modelyard.backends.metadata.postgresql import PostgresStore

    proxy, url = pg_proxy
    store = PostgresStore(url)
    try:
        with store.read() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1min"
            assert conn.execute(text("SHOW search_path")).scalar().startswith("t_")  # kept
        store.engine.dispose()  # the next call must connect through the black hole
        proxy.set_mode("blackhole")
        started = time.perf_counter()
        with pytest.raises(OperationalError, match="timeout"), store.read() as conn:
            conn.execute(text("SELECT 1"))
        assert time.perf_counter() - started < 3 + SLACK_S  # connect_timeout, not forever
        proxy.set_mode("up")
        with store.read() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        proxy.set_mode("up")
        store.close()


def test_a_probe_that_ends_without_an_answer_does_not_keep_the_back_end_skipped() -> None:
    from modelyard.serving._breaker import Breaker

    breaker = Breaker("prediction cache", model="m", retry_after_s=0)
    breaker.failed("Connection refused")
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # one probe at a time
    breaker.abandoned()  # e.g. the request's own timeout cancelled it
    assert breaker.allow()  # so the next call probes, instead of skipping forever
    breaker.succeeded()
    assert breaker.closed and breaker.allow()
