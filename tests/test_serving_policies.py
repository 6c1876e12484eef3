"""What users rely on from the server's policies, driven in process through httpx's ASGI
transport: adaptive batching, inference off the event loop, timeouts, the body limit,
canary / A/B / shadow routing, the prediction cache, online-feature enrichment, hot
swap and rollback, failed loads, metrics, and the ``serve --spec`` file.

Most models are tiny python callables, because the behaviour under test must be
controlled (a row-identifying output, a sleep, a record of every call); enrichment uses
a scikit-learn model on the breast-cancer data. One workspace serves the whole module
to keep it fast; each test registers its own model names, so tests stay independent.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from cli_support import run_cli
from modelyard.errors import ConfigError
from modelyard.features import Entity, FeatureService, FeatureView, FrameSource
from modelyard.registry import FeatureBinding
from modelyard.serving import ServeOptions, create_app
from modelyard.serving._options import ABTest, Canary, Shadow

pytestmark = pytest.mark.anyio

A_ONLY = pd.DataFrame({"a": [1.0, 2.0]})


# -- fixtures and helpers ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelyard.Workspace]:
    # environ={}: a module-scoped fixture starts before conftest's per-test env cleaning.
    ws = modelyard.Workspace.init(tmp_path_factory.mktemp("policies") / "ws", environ={})
    try:
        yield ws
    finally:
        ws.close()


class Calls:
    """The batch sizes a model was called with, appended by the model itself.

    The server runs an unpickled copy of the model, so a file is the one place both
    the model and the test can see.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def model(
        self, factor: float, *, sleep_s: float = 0.0, slow_from: float = float("-inf")
    ) -> Callable[[pd.DataFrame], pd.DataFrame]:
        """``y = a * factor``; sleeps ``sleep_s`` when a row has ``a >= slow_from``."""
        path = str(self.path)

        def model(frame: pd.DataFrame) -> pd.DataFrame:
            with open(path, "a") as f:
                f.write(f"{len(frame)}\n")
            if sleep_s and (frame["a"] >= slow_from).any():
                time.sleep(sleep_s)
            return pd.DataFrame({"y": frame["a"] * factor})

        return model

    def sizes(self) -> list[int]:
        return [int(n) for n in self.path.read_text().split()] if self.path.exists() else []

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def calls(tmp_path: Path) -> Callable[[str], Calls]:
    return lambda name: Calls(tmp_path / f"{name}.calls")


def register(
    ws: modelyard.Workspace,
    name: str,
    model: Any,
    *,
    example: pd.DataFrame = A_ONLY,
    alias: str | None = "production",
    features: FeatureBinding | None = None,
) -> int:
    with ws.start_run(name) as run:
        logged = ws.registry.log_model(run, model, input_example=example)
    version = ws.registry.register(name, logged, features=features).version
    if alias is not None:
        ws.registry.set_alias(name, alias, version)
    return version


@asynccontextmanager
async def serving(
    ws: modelyard.Workspace, models: Sequence[str | ServeOptions], **kwargs: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A started app and a client; alias following is off, so tests refresh explicitly."""
    kwargs.setdefault("poll_interval_s", 0)
    app = create_app(ws.registry, models, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def metric(client: httpx.AsyncClient, sample: str, **labels: str) -> float:
    """The sum of ``sample`` over the series in /metrics whose labels include ``labels``."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    return sum(
        s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def predict(client: httpx.AsyncClient, name: str, body: Any, **kw: Any) -> httpx.Response:
    return await client.post(f"/v1/models/{name}/predict", json=body, **kw)


# -- batching, threads, timeout, limits, validation ------------------------------------------
async def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_rows(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    log = calls("batched")
    register(ws, "batched", log.model(2))
    log.clear()
    opts = ServeOptions(ref="batched@production", max_batch_size=8, max_latency_ms=20)
    async with serving(ws, [opts]) as (_, client):
        # 20 callers of 1, 2 or 3 rows each; every row's value names its caller and position.
        bodies = [[{"a": float(i * 10 + j)} for j in range(i % 3 + 1)] for i in range(20)]
        replies = await asyncio.gather(*(predict(client, "batched", b) for b in bodies))
        for body, r in zip(bodies, replies, strict=True):
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == [{"y": row["a"] * 2} for row in body]
        sizes = log.sizes()
        assert sum(sizes) == sum(len(b) for b in bodies) == 39
        assert len(sizes) < 20 and max(sizes) <= 8
        # /metrics tells the same story: one histogram entry per model call, none above 8.
        histogram = {
            part: await metric(client, f"modelyard_batch_size_rows_{part}", model="batched")
            for part in ("count", "sum")
        }
        assert histogram == {"count": len(sizes), "sum": 39}
        bucket = "modelyard_batch_size_rows_bucket"
        assert await metric(client, bucket, model="batched", le="8.0") == len(sizes)

        # One request above max_batch_size runs on its own, whole.
        log.clear()
        big = [{"a": float(i)} for i in range(20)]
        r = await predict(client, "batched", big)
        assert r.status_code == 200
        assert [p["y"] for p in r.json()["predictions"]] == [2.0 * i for i in range(20)]
        assert log.sizes() == [20]


async def test_a_slow_model_does_not_block_the_event_loop(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    log = calls("sleepy")
    register(ws, "sleepy", log.model(2, sleep_s=0.3))
    log.clear()
    async with serving(ws, ["sleepy@production"]) as (_, client):
        pending = asyncio.create_task(predict(client, "sleepy", {"a": 1.0}))
        for _ in range(200):  # until the model is running
            if log.sizes():
                break
            await asyncio.sleep(0.005)
        assert log.sizes() == [1]
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert not pending.done()  # /healthz answered while the predict was still running
        r = await pending
        assert r.status_code == 200 and r.json()["prediction"] == {"y": 2.0}


async def test_timeout_answers_504_and_the_server_keeps_answering(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    log = calls("slow")
    register(ws, "slow", log.model(2, sleep_s=0.4, slow_from=100))
    register(ws, "quick", calls("quick").model(3))
    opts = ServeOptions(ref="slow@production", timeout_ms=100)
    async with serving(ws, [opts, "quick@production"]) as (_, client):
        started = time.perf_counter()
        r = await predict(client, "slow", {"a": 100.0}, headers={"x-request-id": "t1"})
        assert time.perf_counter() - started < 0.35  # the caller did not wait for the model
        assert r.status_code == 504
        body = r.json()
        assert body["code"] == "timeout" and body["request_id"] == "t1"
        assert "100 ms" in body["message"] and "timeout_ms" in body["message"]
        # While the timed-out call still runs: the process and other models answer.
        assert (await client.get("/healthz")).status_code == 200
        r = await predict(client, "quick", {"a": 1.0})
        assert r.status_code == 200 and r.json()["prediction"] == {"y": 3.0}
        # Requests to this model queue behind the call still running (a thread cannot be
        # stopped), so wait for it before asking again.
        await asyncio.sleep(0.4)
        r = await predict(client, "slow", {"a": 1.0})
        assert r.status_code == 200 and r.json()["prediction"] == {"y": 2.0}
        assert await metric(client, "modelyard_requests_total", model="slow", code="504") == 1


async def test_a_body_over_the_limit_is_413_and_never_reaches_the_model(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    log = calls("limited")
    register(ws, "limited", log.model(2))
    log.clear()
    async with serving(ws, ["limited@production"], max_body_bytes=1000) as (_, client):
        rows = [{"a": float(i)} for i in range(100)]
        content = json.dumps(rows).encode()
        assert len(content) > 1000
        r = await client.post(
            "/v1/models/limited/predict",
            content=content,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        assert r.json()["code"] == "body_too_large" and "1000 bytes" in r.json()["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it streams
            for start in range(0, len(content), 256):
                yield content[start : start + 256]

        r = await client.post("/v1/models/limited/predict", content=chunks())
        assert r.status_code == 413 and r.json()["code"] == "body_too_large"
        assert log.sizes() == []
        assert await metric(client, "modelyard_batch_size_rows_count", model="limited") == 0
        assert await metric(client, "modelyard_requests_total", model="limited", code="413") == 2
        r = await predict(client, "limited", rows[:10])  # under the limit: served
        assert r.status_code == 200 and len(r.json()["predictions"]) == 10


async def test_invalid_input_is_422_per_field_and_never_reaches_the_model(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    log = calls("strict")
    register(ws, "strict", log.model(2), example=pd.DataFrame({"a": [1.0], "tag": ["x"]}))
    log.clear()
    async with serving(ws, ["strict@production"]) as (_, client):
        good = {"a": 1.0, "tag": "x"}
        bad = {"a": "big", "tagg": "x"}  # wrong type, a missing field, an unknown field
        r = await predict(client, "strict", [good, bad])
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "validation_failed" and body["request_id"]
        by_field = {e["field"]: e for e in body["errors"]}
        assert len(body["errors"]) == len(by_field) == 3
        assert set(by_field) == {"a", "tag", "tagg"}
        assert all(e["row"] == 1 for e in body["errors"])
        assert log.sizes() == []  # the good row was not predicted either
        assert await metric(client, "modelyard_batch_size_rows_count", model="strict") == 0


# -- traffic policies --------------------------------------------------------------------------
def two_versions(
    ws: modelyard.Workspace,
    calls: Callable[[str], Calls],
    name: str,
    example: pd.DataFrame = A_ONLY,
    candidate_sleep_s: float = 0.0,
) -> tuple[Calls, Calls]:
    """``name@production`` = version 1 (y = 2a), ``name@staging`` = version 2 (y = 3a)."""
    champion, candidate = calls(f"{name}-1"), calls(f"{name}-2")
    register(ws, name, champion.model(2), example=example)
    slow = {"sleep_s": candidate_sleep_s, "slow_from": 100} if candidate_sleep_s else {}
    register(ws, name, candidate.model(3, **slow), example=example, alias="staging")
    champion.clear()
    candidate.clear()
    return champion, candidate


async def test_canary_sends_its_share_and_every_answer_names_variant_and_version(
    ws: modelyard.Workspace, calls: Callable[[str], Calls], server_log: list[dict[str, Any]]
) -> None:
    two_versions(ws, calls, "canary")
    opts = ServeOptions(ref="canary@production", canary=Canary(candidate="staging", percent=30))
    async with serving(ws, [opts]) as (_, client):
        replies = await asyncio.gather(
            *(predict(client, "canary", {"a": float(i)}) for i in range(1000))
        )
        staging = 0
        expected = {"production": (1, 2.0), "staging": (2, 3.0)}
        answered = {}
        for i, r in enumerate(replies):
            body = r.json()
            version, factor = expected[body["variant"]]
            assert body["version"] == version and body["prediction"] == {"y": factor * i}
            staging += body["variant"] == "staging"
            answered[body["request_id"]] = (body["variant"], body["version"])
        # Binomial(1000, 0.3): mean 300, sd 14.5; 5 sd either side.
        assert 228 <= staging <= 372
        assert (
            await metric(client, "modelyard_requests_total", model="canary", variant="staging")
            == staging
        )
    lines = [line for line in server_log if line["message"] == "predict"]
    assert len(lines) == 1000
    for line in lines:
        assert (line["variant"], line["version"]) == answered[line["request_id"]]


async def test_ab_split_is_sticky_per_key_across_requests_and_servers(
    ws: modelyard.Workspace, calls: Callable[[str], Calls], server_log: list[dict[str, Any]]
) -> None:
    two_versions(ws, calls, "ab", example=pd.DataFrame({"user": ["u"], "a": [1.0]}))
    opts = ServeOptions(ref="ab@production", ab=ABTest(candidate="staging", key="user"))
    users = [f"user-{i}" for i in range(100)]

    async def variants(client: httpx.AsyncClient, a: float) -> dict[str, str]:
        replies = await asyncio.gather(*(predict(client, "ab", {"user": u, "a": a}) for u in users))
        out = {}
        for user, r in zip(users, replies, strict=True):
            body = r.json()
            factor = {"production": 2.0, "staging": 3.0}[body["variant"]]
            assert body["prediction"] == {"y": factor * a}
            out[user] = body["variant"]
        return out

    async with serving(ws, [opts]) as (_, client):
        first = await variants(client, 1.0)
        assert await variants(client, 2.0) == first
    async with serving(ws, [opts]) as (_, client):  # a restart or another replica
        assert await variants(client, 3.0) == first
    assert set(first.values()) == {"production", "staging"}
    lines = [line for line in server_log if line["message"] == "predict"]
    assert len(lines) == 300
    assert all(line["variant"] == first[line["ab_key"]] for line in lines)


async def test_shadow_answers_with_the_champion_and_logs_both_outputs(
    ws: modelyard.Workspace, calls: Callable[[str], Calls], server_log: list[dict[str, Any]]
) -> None:
    _, candidate = two_versions(ws, calls, "shadow", candidate_sleep_s=0.2)
    opts = ServeOptions(ref="shadow@production", shadow=Shadow(candidate="staging"))
    async with serving(ws, [opts]) as (_, client):
        for i in range(10):
            r = await predict(client, "shadow", {"a": float(i)}, headers={"x-request-id": f"s{i}"})
            body = r.json()
            assert (body["variant"], body["version"]) == ("production", 1)
            assert body["prediction"] == {"y": 2.0 * i}
        # A slow candidate does not hold up the answer.
        r = await predict(client, "shadow", {"a": 100.0}, headers={"x-request-id": "slow"})
        assert r.json()["prediction"] == {"y": 200.0}
        assert not [x for x in server_log if x["message"] == "shadow" and x["request_id"] == "slow"]
    # Shutting down waits for the shadow calls still running.
    shadows = {x["request_id"]: x for x in server_log if x["message"] == "shadow"}
    assert set(shadows) == {f"s{i}" for i in range(10)} | {"slow"}
    for i in range(10):
        line = shadows[f"s{i}"]
        assert (line["variant"], line["version"], line["champion_version"]) == ("staging", 2, 1)
        assert line["outputs"] == {"y": [3.0 * i]}
        assert line["champion_outputs"] == {"y": [2.0 * i]}
    assert sum(candidate.sizes()) == 11


# -- prediction cache --------------------------------------------------------------------------
async def test_local_cache_hits_repeats_and_misses_after_a_new_version_or_the_ttl(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    v1, v2 = calls("cached-1"), calls("cached-2")
    register(ws, "cached", v1.model(2))
    v1.clear()
    opts = ServeOptions(ref="cached@production", cache="local", cache_ttl_s=0.5)

    async def count(result: str) -> float:
        return await metric(client, "modelyard_cache_total", model="cached", result=result)

    async with serving(ws, [opts]) as (app, client):
        for _ in range(3):
            r = await predict(client, "cached", {"a": 1.0})
            assert r.json()["prediction"] == {"y": 2.0}
        assert v1.sizes() == [1]
        assert (await count("hit"), await count("miss")) == (2, 1)

        # A request mixing a cached row and a new one: only the new row is predicted.
        r = await predict(client, "cached", [{"a": 5.0}, {"a": 1.0}])
        assert [p["y"] for p in r.json()["predictions"]] == [10.0, 2.0]
        assert v1.sizes() == [1, 1]
        assert (await count("hit"), await count("miss")) == (3, 2)

        # A new version never reads the old version's entries.
        ws.registry.set_alias("cached", "production", register(ws, "cached", v2.model(3)))
        v2.clear()
        assert await app.state.pool.refresh()
        r = await predict(client, "cached", {"a": 1.0})
        assert r.json() | {"request_id": ""} == {
            "model": "cached",
            "version": 2,
            "variant": "production",
            "request_id": "",
            "prediction": {"y": 3.0},
        }
        assert v2.sizes() == [1]
        assert await count("miss") == 3

        await asyncio.sleep(0.6)  # past cache_ttl_s
        r = await predict(client, "cached", {"a": 1.0})
        assert r.json()["prediction"] == {"y": 3.0}
        assert v2.sizes() == [1, 1]
        assert (await count("hit"), await count("miss")) == (3, 4)


async def test_redis_cache_is_shared_by_replicas(
    ws: modelyard.Workspace, calls: Callable[[str], Calls], redis_url: str
) -> None:
    import redis

    name = f"rcache-{uuid.uuid4().hex[:8]}"  # Redis is shared with other test runs
    log = calls(name)
    register(ws, name, log.model(2))
    log.clear()
    opts = ServeOptions(ref=f"{name}@production", cache="redis", cache_url=redis_url)
    store = redis.Redis.from_url(redis_url)
    try:
        async with serving(ws, [opts]) as (_, first), serving(ws, [opts]) as (_, second):
            r = await predict(first, name, [{"a": 1.0}, {"a": 2.0}])
            assert [p["y"] for p in r.json()["predictions"]] == [2.0, 4.0]
            assert log.sizes() == [2]
            r = await predict(second, name, [{"a": 2.0}, {"a": 1.0}])
            assert [p["y"] for p in r.json()["predictions"]] == [4.0, 2.0]
            assert log.sizes() == [2]  # the second replica did not call the model
            assert await metric(second, "modelyard_cache_total", result="hit") == 2
            assert await metric(second, "modelyard_cache_total", result="miss") == 0
        keys = list(store.scan_iter(f"modelyard:pred:{name}:*"))
        assert len(keys) == 2
        assert all(0 < store.pttl(k) <= 300_000 for k in keys)  # cache_ttl_s bounds each entry
    finally:
        for key in store.scan_iter(f"modelyard:pred:{name}:*"):
            store.delete(key)
        store.close()


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0?bogus=1", "redis://127.0.0.1:abc/0"],
    ids=["unknown-parameter", "bad-port"],
)
async def test_a_cache_url_redis_refuses_is_refused_before_serving(
    ws: modelyard.Workspace, calls: Callable[[str], Calls], url: str
) -> None:
    # Every prediction answered 500 prediction_failed: redis-py's TypeError / ValueError
    # is not an outage, so the cache did not fail open, and /readyz stayed ready.
    register(ws, "badurl", calls("badurl").model(2))
    opts = ServeOptions(ref="badurl@production", cache="redis", cache_url=url)
    with pytest.raises(ConfigError, match=r"cache_url .* is not one Redis accepts"):
        async with serving(ws, [opts]):
            pass


async def test_a_redis_cache_on_a_unix_socket_works(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    # make_cache accepts unix:// URLs, but the TCP keepalive option made redis-py refuse
    # every connection: each prediction answered 500.
    import redis

    sock = Path(tempfile.mkdtemp(prefix="rc")) / "redis.sock"  # short: AF_UNIX paths are
    server = subprocess.Popen(  # limited to about 100 characters
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and server.poll() is None, "no redis-server"
            await asyncio.sleep(0.05)
        redis.Redis(unix_socket_path=str(sock)).ping()
        log = calls("unixcache")
        register(ws, "unixcache", log.model(2))
        log.clear()
        opts = ServeOptions(ref="unixcache@production", cache="redis", cache_url=f"unix://{sock}")
        async with serving(ws, [opts]) as (_, client):
            for _ in range(2):
                r = await predict(client, "unixcache", {"a": 1.0})
                assert r.status_code == 200, r.text
            assert log.sizes() == [1]  # the second answer came from the cache
            assert await metric(client, "modelyard_cache_total", result="hit") == 1
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(sock.parent, ignore_errors=True)


# -- online-feature enrichment -----------------------------------------------------------------
@pytest.fixture(scope="module")
def scans() -> pd.DataFrame:
    """Breast-cancer scans: a patient id, two stored features, one request-time field."""
    bunch = load_breast_cancer(as_frame=True)
    x = bunch.data
    return pd.DataFrame(
        {
            "patient_id": range(len(x)),
            "mean_area": x["mean area"],
            "mean_radius": x["mean radius"],
            "mean_texture": x["mean texture"],
            "label": bunch.target.map({0: "malignant", 1: "benign"}),
        }
    )


async def test_online_features_fill_the_request_from_the_entity_key(
    ws: modelyard.Workspace, scans: pd.DataFrame
) -> None:
    stored = scans.head(50)  # patients 50 and up have no online values
    patient = Entity("patient", {"patient_id": "int64"})
    view = FeatureView(
        "scan",
        entity=patient,
        source=FrameSource(
            stored[["patient_id", "mean_radius", "mean_texture"]].assign(
                event_timestamp=pd.Timestamp("2024-01-01", tz="UTC")
            )
        ),
        features={"mean_radius": "float64", "mean_texture": "float64"},
    )
    ws.features.apply([patient, view, FeatureService("scan_svc", [view])])
    ws.features.materialize(datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))

    inputs = ["mean_area", "mean_radius", "mean_texture"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(scans[inputs], scans["label"])
    defaults = {"mean_radius": 14.0, "mean_texture": 19.0}
    for name, binding in {
        "scan": FeatureBinding("scan_svc"),
        "scan_default": FeatureBinding("scan_svc", on_missing="default", defaults=defaults),
    }.items():
        register(ws, name, model, example=scans[inputs].head(10), features=binding)

    def expected(rows: pd.DataFrame) -> tuple[list[str], Any]:
        proba = model.predict_proba(rows[inputs])[:, list(model.classes_).index("malignant")]
        return list(model.predict(rows[inputs])), pytest.approx(list(proba))

    def got(r: httpx.Response) -> tuple[list[str], list[float]]:
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        return [p["prediction"] for p in predictions], [
            p["probability_malignant"] for p in predictions
        ]

    async with serving(
        ws, ["scan@production", "scan_default@production"], features=ws.features
    ) as (_, client):
        chosen = stored.iloc[[3, 0, 41]]
        body = [{"patient_id": int(p), "mean_area": float(a)} for p, a in chosen.iloc[:, :2].values]
        assert got(await predict(client, "scan", body)) == expected(chosen)

        # An unknown patient: reject names the key once, not every feature it lacks ...
        unknown = {"patient_id": 999, "mean_area": 500.0}
        r = await predict(client, "scan", [body[0], unknown])
        assert r.status_code == 422 and r.json()["code"] == "validation_failed"
        (error,) = r.json()["errors"]
        assert error["field"] == "patient_id" and error["row"] == 1
        assert "no online features for patient_id=999 in service 'scan_svc'" in error["message"]
        # ... and default fills the declared values.
        r = await predict(client, "scan_default", [unknown])
        fallback = pd.DataFrame([{"mean_area": 500.0, **defaults}])
        assert got(r) == expected(fallback)
        for name, policy in (("scan", "reject"), ("scan_default", "default")):
            missing = await metric(
                client, "modelyard_features_missing_total", model=name, policy=policy
            )
            assert missing == 2  # one per feature

        # The request contract is keys and request fields, never the stored features.
        listed = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
        request_fields = [f["name"] for f in listed["scan"]["request"]["fields"]]
        assert sorted(request_fields) == ["mean_area", "patient_id"]
        signature_fields = [f["name"] for f in listed["scan"]["signature"]["inputs"]["fields"]]
        assert signature_fields == inputs
        spec = (await client.get("/openapi.json")).json()
        op = spec["paths"]["/v1/models/scan/predict"]["post"]
        schema = op["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
        assert set(schema["properties"]) == {"patient_id", "mean_area"}


# -- hot swap, rollback, failed loads ---------------------------------------------------------
async def test_hot_swap_then_rollback_serves_the_previous_version_at_once(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    register(ws, "swap", calls("swap-1").model(2))
    v2 = register(ws, "swap", calls("swap-2").model(3), alias=None)
    async with serving(ws, ["swap@production"]) as (app, client):
        assert not await app.state.pool.refresh()  # nothing moved
        ws.registry.set_alias("swap", "production", v2)
        assert await app.state.pool.refresh()
        r = await predict(client, "swap", {"a": 1.0})
        assert (r.json()["version"], r.json()["prediction"]) == (2, {"y": 3.0})
        ready = (await client.get("/readyz")).json()["models"]["swap"]
        assert (ready["version"], ready["previous"], ready["ready"]) == (2, 1, True)

        r = await client.post("/v1/models/swap/rollback", json={})
        assert r.status_code == 200 and r.json() == {"model": "swap", "version": 1}
        r = await predict(client, "swap", {"a": 1.0})
        assert (r.json()["version"], r.json()["prediction"]) == (1, {"y": 2.0})
        assert ws.registry.get("swap@production").version == 1
        kinds = [(kind, v) for _, kind, v in ws.registry.alias_history("swap", "production")]
        assert kinds == [("set", 1), ("set", 2), ("rollback", 1)]
        assert not await app.state.pool.refresh()  # the alias and the server agree

        r = await client.post("/v1/models/swap/rollback", json={})
        assert r.status_code == 409
        assert r.json()["code"] == "conflict" and "no earlier version" in r.json()["message"]
        r = await predict(client, "swap", {"a": 1.0})
        assert r.json()["version"] == 1
        assert ws.registry.get("swap@production").version == 1


async def test_a_version_that_fails_to_load_leaves_the_previous_one_serving(
    ws: modelyard.Workspace,
    calls: Callable[[str], Calls],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_log: list[dict[str, Any]],
) -> None:
    register(ws, "fragile", calls("fragile").model(2))
    # Version 2 is pickled by reference to a module that the server cannot import: the
    # classic "trained with a package the serving image lacks".
    module = f"gone_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def predict(frame):\n    return frame['a'] * 5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = importlib.import_module(module).predict
    broken = register(ws, "fragile", fn, alias=None)
    sys.path.remove(str(tmp_path))
    monkeypatch.delitem(sys.modules, module)

    async with serving(ws, ["fragile@production"]) as (app, client):
        ws.registry.set_alias("fragile", "production", broken)
        assert not await app.state.pool.refresh()
        assert not await app.state.pool.refresh()  # reported once, not retried every poll
        r = await predict(client, "fragile", {"a": 1.0})
        assert r.status_code == 200
        assert (r.json()["version"], r.json()["prediction"]) == (1, {"y": 2.0})
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "degraded"
        entry = ready.json()["models"]["fragile"]
        assert entry["ready"] is False and entry["version"] == 1
        assert "version 2" in entry["error"] and module in entry["error"]
        failures = await metric(
            client, "modelyard_model_load_failures_total", model="fragile", version="2"
        )
        assert failures == 1
        logged = [x for x in server_log if x["message"] == "model load failed"]
        assert [x["version"] for x in logged] == [2] and module in logged[0]["exception"]

        ws.registry.set_alias("fragile", "production", 1)
        await app.state.pool.refresh()
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.json()
        assert "error" not in ready.json()["models"]["fragile"]


# -- metrics and the spec file ----------------------------------------------------------------
async def test_metrics_count_requests_by_model_version_variant_and_code(
    ws: modelyard.Workspace, calls: Callable[[str], Calls]
) -> None:
    register(ws, "metered", calls("metered").model(2))
    async with serving(ws, ["metered@production"]) as (_, client):
        for i in range(3):
            assert (await predict(client, "metered", {"a": float(i)})).status_code == 200
        assert (await predict(client, "metered", {"b": 1})).status_code == 422
        labels = {"model": "metered", "version": "1", "variant": "production"}
        assert await metric(client, "modelyard_requests_total", **labels, code="200") == 3
        assert await metric(client, "modelyard_requests_total", model="metered", code="422") == 1
        assert await metric(client, "modelyard_request_latency_seconds_count", **labels) == 3
        assert await metric(client, "modelyard_request_latency_seconds_sum", **labels) > 0
        top = await metric(client, "modelyard_request_latency_seconds_bucket", **labels, le="+Inf")
        assert top == 3
        r = await client.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        assert "# TYPE modelyard_request_latency_seconds histogram" in r.text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            '[models.churn]\ncanary = { candidate = "staging", percent = 10 }\n'
            'shadow = { candidate = "staging" }\n',
            "[models.churn]: model: Value error, choose one traffic policy per model, "
            "not canary and shadow",
        ),
        ("[models.churn]\nmax_batch = 8\n", "[models.churn]: max_batch: unknown key; did you mean"),
        (
            '[models.churn]\ncanary = { candidate = "staging", percent = 150 }\n',
            "[models.churn]: canary.percent: Input should be less than or equal to 100",
        ),
        ('[server]\nport = 1\n[models.churn]\nref = "churn@production"\n', "only [models.NAME]"),
        ("[models.churn\n", "is not valid TOML"),
        (None, "does not exist"),
    ],
    ids=["two-policies", "unknown-key", "bad-percent", "unknown-table", "not-toml", "missing"],
)
def test_a_bad_serve_spec_is_one_line_exit_2(
    spec: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "serve.toml"
    if spec is not None:
        path.write_text(spec)
    code, out, err = run_cli(capsys, "serve", "--spec", str(path))
    assert code == 2, (out, err)
    assert message in err
    assert str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_an_ab_request_without_its_key_goes_to_the_champion() -> None:
    import random

    from modelyard.serving._router import choose

    policy = ABTest(candidate="staging", key="user", percent=99)
    rng = random.Random(0)
    assert choose(policy, {"user": [None], "a": [1.0]}, rng) == (False, None)
    assert choose(policy, {"a": [1.0]}, rng) == (False, None)
    assert choose(policy, {"user": ["u-1"], "a": [1.0]}, rng)[1] == "u-1"
