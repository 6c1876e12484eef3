"""The feature server: ``GET|POST /v1/features/SERVICE`` and ``modelyard features serve``.

In process through httpx's ASGI transport, on both online stores (SQLite and the real
Redis): the answers are what ``ws.features.get_online`` reads, in every request form; bad
input is a 4xx in our error shape naming the key, never a crash; keys and roles, a key
limited to some models; a new ``features apply`` served without a restart; a store that
is down is a 503. One test runs ``modelyard features serve`` as a real process.

Redis is shared with other tests: every view this module writes has a unique name.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pandas as pd
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import modelyard
from fault_proxy import FaultProxy
from modelyard.features import Entity, FeatureService, FeatureView, FrameSource
from modelyard.registry import FeatureBinding
from modelyard.security import create_key
from modelyard.serving import create_app
from server_support import CLI, ServerProcess, free_port

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC).replace(microsecond=0)
USER = Entity("user", {"user_id": "int64"})
TRIP = Entity("trip", {"driver_id": "int64", "region": "string"})


@dataclass
class Features:
    ws: modelyard.Workspace
    users: str  # view names (unique: Redis is shared)
    trips: str


def _views(users: str, trips: str) -> tuple[FeatureView, FeatureView]:
    user_rows = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 1],
            "clicks": [10, 20, 30, 11],
            "score": [0.5, 0.25, None, 0.75],
            "event_timestamp": [NOW - timedelta(hours=h) for h in (5, 4, 3, 1)],
        }
    )
    trip_rows = pd.DataFrame(
        {
            "driver_id": [1, 1, 2],
            "region": ["eu", "us", "eu"],
            "rating": [4.5, 3.0, 5.0],
            "event_timestamp": [NOW - timedelta(hours=2)] * 3,
        }
    )
    user_view = FeatureView(
        users,
        entity=USER,
        source=FrameSource(user_rows),
        features={"clicks": "int64", "score": "float64"},
        ttl=timedelta(days=1),
    )
    trip_view = FeatureView(
        trips, entity=TRIP, source=FrameSource(trip_rows), features={"rating": "float64"}
    )
    return user_view, trip_view


def _define(ws: modelyard.Workspace, users: str, trips: str) -> None:
    user_view, trip_view = _views(users, trips)
    ws.features.apply(
        [
            USER,
            TRIP,
            user_view,
            trip_view,
            FeatureService("user_svc", [user_view]),
            FeatureService("trip_svc", [trip_view]),
            FeatureService("both_svc", [user_view, trip_view]),
        ]
    )


def _materialize(ws: modelyard.Workspace) -> None:
    ws.features.materialize(NOW - timedelta(days=2), NOW)


def _drop(ws: modelyard.Workspace, *views: str) -> None:
    for view in views:
        for version in (1, 2):
            ws.online.drop(f"{view}__v{version}")


@pytest.fixture
def features(tmp_path: Path, online_url: str) -> Iterator[Features]:
    """Two views (one join key; two join keys) and three services, materialized."""
    ws = modelyard.Workspace.init(tmp_path / "ws", online_url=online_url)
    tag = uuid.uuid4().hex[:10]
    users, trips = f"users_{tag}", f"trips_{tag}"
    _define(ws, users, trips)
    _materialize(ws)
    try:
        yield Features(ws, users, trips)
    finally:
        _drop(ws, users, trips)
        ws.close()


@asynccontextmanager
async def serving(
    ws: modelyard.Workspace, models: list[str] | None = None, **kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    kwargs.setdefault("poll_interval_s", 0)
    app = create_app(ws.registry, models or [], features=ws.features, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


def _expected(ws: modelyard.Workspace, service: str, keys: dict[str, list[Any]]) -> dict[str, Any]:
    """The answer built from ``get_online`` on the same store (join keys first)."""
    got = ws.features.get_online(service, keys)
    n = len(next(iter(keys.values())))
    results = [
        {"values": values, "statuses": ["present"] * n, "event_timestamps": [None] * n}
        for values in keys.values()
    ]
    for name in got.names:
        times = [
            None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")
            for t in got.event_times[name]
        ]
        results.append(
            {"values": got.values[name], "statuses": got.status[name], "event_timestamps": times}
        )
    return {"features": [*keys, *got.names], "results": results}


def _body(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body.pop("request_id") == r.headers["x-request-id"]
    return body


# -- answers ------------------------------------------------------------------------------
async def test_every_request_form_answers_what_get_online_reads(features: Features) -> None:
    ws = features.ws
    keys = {"user_id": [1, 2, 3, 99]}  # 3 has a null score; 99 has no row
    expected = {"service": "user_svc", "version": 1, **_expected(ws, "user_svc", keys)}
    async with serving(ws) as client:
        columns = await client.post("/v1/features/user_svc", json={"entities": keys})
        rows = [{"user_id": k} for k in keys["user_id"]]
        by_row = await client.post("/v1/features/user_svc", json={"entities": rows})
        query = await client.get("/v1/features/user_svc?user_id=1&user_id=2&user_id=3&user_id=99")
        # 1.0 is the key 1 in a query as in a JSON body.
        floats = await client.get(
            "/v1/features/user_svc?user_id=1.0&user_id=2&user_id=3.00&user_id=99"
        )
        for r in (columns, by_row, query, floats):
            assert _body(r) == expected
    clicks = expected["results"][1]
    assert expected["features"] == ["user_id", "clicks", "score"]
    assert clicks["values"] == [11, 20, 30, None]
    assert clicks["statuses"] == ["present", "present", "present", "missing"]
    stamp = (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert clicks["event_timestamps"][0] == stamp
    assert expected["results"][2]["values"] == [0.75, 0.25, None, None]


async def test_several_join_keys_and_services_of_two_views(features: Features) -> None:
    ws = features.ws
    keys = {"driver_id": [1, 1, 2, 2], "region": ["eu", "us", "eu", "us"]}
    async with serving(ws) as client:
        r = await client.get(
            "/v1/features/trip_svc?driver_id=1&region=eu&driver_id=1&region=us"
            "&driver_id=2&region=eu&driver_id=2&region=us"
        )
        assert _body(r) == {"service": "trip_svc", "version": 1, **_expected(ws, "trip_svc", keys)}
        both = {"user_id": [1, 2], "driver_id": [1, 2], "region": ["us", "us"]}
        r = await client.post("/v1/features/both_svc", json={"entities": both})
        body = _body(r)
    assert body == {"service": "both_svc", "version": 1, **_expected(ws, "both_svc", both)}
    assert body["features"] == ["user_id", "driver_id", "region", "clicks", "score", "rating"]
    assert body["results"][5]["statuses"] == ["present", "missing"]


async def test_full_feature_names(features: Features) -> None:
    ws, users = features.ws, features.users
    async with serving(ws) as client:
        body = {"entities": {"user_id": [1]}, "full_feature_names": True}
        posted = _body(await client.post("/v1/features/user_svc", json=body))
        got = _body(await client.get("/v1/features/user_svc?user_id=1&full_feature_names=true"))
        plain = _body(await client.get("/v1/features/user_svc?user_id=1"))
    assert posted == got
    assert posted["features"] == ["user_id", f"{users}__clicks", f"{users}__score"]
    assert plain["features"] == ["user_id", "clicks", "score"]
    assert posted["results"] == plain["results"]


# -- bad input ------------------------------------------------------------------------------
BAD: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/v1/features/user_sv?user_id=1", None, 404, "did you mean 'user_svc'?"),
    ("POST", "/v1/features/nope", {"entities": {"user_id": [1]}}, 404, "'nope' is not regist"),
    ("GET", "/v1/features/user_svc", None, 422, "join key 'user_id' of feature service"),
    ("GET", "/v1/features/user_svc?user_id=1&user_id=abc", None, 422, "user_id=abc is not an"),
    ("GET", "/v1/features/user_svc?user_id=1.5", None, 422, "'user_id' is int64; user_id=1.5"),
    ("GET", "/v1/features/user_svc?user_id=1&usr=2", None, 422, "'usr' is not a join key"),
    ("GET", "/v1/features/user_svc?user_id=1&full_feature_names=maybe", None, 422, "true or f"),
    ("GET", "/v1/features/trip_svc?driver_id=1", None, 422, "join key 'region'"),
    (
        "GET",
        "/v1/features/trip_svc?driver_id=1&driver_id=2&region=eu",
        None,
        422,
        "different numbers of times (driver_id: 2, region: 1)",
    ),
    ("POST", "/v1/features/user_svc", {"entities": {"user_id": []}}, 422, "no entities"),
    ("POST", "/v1/features/user_svc", {"entities": []}, 422, "no entities"),
    ("POST", "/v1/features/user_svc", {"entities": {}}, 422, "no entities"),
    ("POST", "/v1/features/user_svc", {"entities": {"user_id": ["1"]}}, 422, "'1' is not an in"),
    ("POST", "/v1/features/user_svc", {"entities": {"user_id": [True]}}, 422, "True is not an"),
    ("POST", "/v1/features/user_svc", {"entities": [{"user_id": 1}, {}]}, 422, "entity 1 has no"),
    ("POST", "/v1/features/user_svc", {"entities": [1]}, 422, "entity 0 is not an object"),
    ("POST", "/v1/features/user_svc", {"entities": {"user_id": 1, "x": [2]}}, 422, "'user_id' is"),
    ("POST", "/v1/features/user_svc", {"entities": "user_id=1"}, 422, "entities is str"),
    ("POST", "/v1/features/user_svc", {"user_id": [1]}, 422, "not an object with 'entities'"),
    ("POST", "/v1/features/user_svc", [1, 2], 422, "not an object with 'entities'"),
    ("POST", "/v1/features/user_svc", b"user_id=1", 422, "body is not valid JSON"),
    ("POST", "/v1/features/user_svc", b"", 422, "body is not valid JSON"),
    ("POST", "/v1/features/user_svc", {"entities": {"user_id": [1]}, "x": 1}, 422, "unknown fi"),
    (
        "POST",
        "/v1/features/user_svc",
        {"entities": {"user_id": [1]}, "full_feature_names": "yes"},
        422,
        "full_feature_names is true or false",
    ),
    (
        "POST",
        "/v1/features/trip_svc",
        {"entities": {"driver_id": [1, 2], "region": ["eu"]}},
        422,
        "differ in length (driver_id: 2, region: 1)",
    ),
    (
        "POST",
        "/v1/features/trip_svc",
        {"entities": {"driver_id": [1], "region": [7]}},
        422,
        "join key 'region' is string; 7 is not text",
    ),
    ("POST", "/v1/features/user_svc", {"entities": {"user_id": list(range(6))}}, 413, "than the 5"),
    ("GET", "/v1/features/user_svc?" + "&".join(["user_id=1"] * 6), None, 413, "6 entities"),
]


@pytest.fixture
def sqlite_features(tmp_path: Path) -> Iterator[Features]:
    """``features`` on the embedded SQLite store only (tests that are not about the store)."""
    ws = modelyard.Workspace.init(tmp_path / "ws")
    _define(ws, "users", "trips")
    _materialize(ws)
    try:
        yield Features(ws, "users", "trips")
    finally:
        ws.close()


async def test_bad_input_is_a_4xx_naming_the_key_and_the_worker_goes_on(
    sqlite_features: Features,
) -> None:
    wrong = []
    async with serving(sqlite_features.ws, max_batch_rows=5) as client:
        for method, url, body, status, words in BAD:
            if isinstance(body, bytes):
                r = await client.post(url, content=body)
            elif method == "POST":
                r = await client.post(url, json=body)
            else:
                r = await client.get(url)
            answer = r.json()
            if r.status_code != status or words not in answer.get("message", ""):
                wrong.append(f"{method} {url} {body!r}: {r.status_code} {r.text[:300]}")
                continue
            assert answer["request_id"] == r.headers["x-request-id"]
            assert answer["code"] in ("not_found", "validation_failed", "body_too_large")
            if status == 422:
                assert answer["errors"] and answer["errors"][0]["field"]
        ok = await client.get("/v1/features/user_svc?user_id=1")
        assert ok.status_code == 200
    assert wrong == []


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["entities", "user_id", "x", ""]), inner, max_size=3)
    ),
    max_leaves=12,
)
QUERY = st.lists(
    st.tuples(st.sampled_from(["user_id", "full_feature_names", "x"]), st.text(max_size=4)),
    max_size=4,
)


def test_no_body_or_query_string_gets_a_5xx(sqlite_features: Features) -> None:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serving(sqlite_features.ws)) as client,
    ):

        @settings(max_examples=150, deadline=None, database=None)
        @given(body=JSON, query=QUERY)
        def check(body: Any, query: list[tuple[str, str]]) -> None:
            for doc in (body, {"entities": body}):
                post = partial(client.post, "/v1/features/user_svc", content=orjson.dumps(doc))
                r = portal.call(post)
                assert r.status_code in (200, 413, 422), r.text
                assert r.json()["request_id"]
            r = portal.call(partial(client.get, "/v1/features/user_svc", params=query))
            assert r.status_code in (200, 422), r.text

        check()


# -- the online store ------------------------------------------------------------------------
async def test_a_redis_store_that_is_down_is_a_fast_503_and_recovers(
    tmp_path: Path, redis_url: str
) -> None:
    with FaultProxy("127.0.0.1", 6379) as proxy:
        ws = modelyard.Workspace.init(tmp_path / "ws", online_url=proxy.url("redis", "/15"))
        tag = uuid.uuid4().hex[:10]
        _define(ws, f"users_{tag}", f"trips_{tag}")
        _materialize(ws)
        try:
            async with serving(ws) as client:
                url = "/v1/features/user_svc?user_id=1"
                assert (await client.get(url)).status_code == 200
                proxy.set_mode("down")
                started = time.perf_counter()
                r = await client.get(url)
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "online_store_unavailable"
                assert "'user_svc'" in r.json()["message"] and r.json()["request_id"]
                assert time.perf_counter() - started < 1.5
                ready = await client.get("/readyz")  # a feature server needs its store
                assert ready.status_code == 503
                assert ready.json()["checks"]["online_store"]["ok"] is False
                proxy.set_mode("up")
                deadline = time.monotonic() + 10
                while (await client.get(url)).status_code != 200:
                    assert time.monotonic() < deadline, "no recovery"
                    await anyio.sleep(0.2)
        finally:
            proxy.set_mode("up")
            _drop(ws, f"users_{tag}", f"trips_{tag}")
            ws.close()


async def test_a_sqlite_store_never_written_is_a_503_not_missing(tmp_path: Path) -> None:
    modelyard.Workspace.init(tmp_path / "ws").close()
    # Configured (not the default file), so reading never creates it: it does not exist.
    ws = modelyard.Workspace(tmp_path / "ws", online_url=f"sqlite:///{tmp_path / 'online.db'}")
    _define(ws, "users", "trips")
    try:
        async with serving(ws) as client:
            r = await client.post("/v1/features/user_svc", json={"entities": {"user_id": [1]}})
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "online_store_unavailable"
            assert "modelyard features materialize" in r.json()["message"]
    finally:
        ws.close()


# -- keys and roles ---------------------------------------------------------------------------
def _bound_model(ws: modelyard.Workspace, name: str, service: str) -> None:
    def add(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": frame["a"] + frame["clicks"]})

    with ws.start_run(name) as run:
        example = pd.DataFrame({"a": [1.0], "clicks": [2]})
        logged = ws.registry.log_model(run, add, input_example=example)
    version = ws.registry.register(name, logged, features=FeatureBinding(service)).version
    ws.registry.set_alias(name, "production", version)


async def test_keys_roles_and_models_a_key_is_limited_to(sqlite_features: Features) -> None:
    ws = sqlite_features.ws
    _bound_model(ws, "clicker", "user_svc")
    keys = {
        "admin": create_key(ws.metadata, "admin")[1],
        "predictor": create_key(ws.metadata, "predictor")[1],
        "clicker_only": create_key(ws.metadata, "predictor", models=["clicker"])[1],
        "ghost_only": create_key(ws.metadata, "predictor", models=["ghost"])[1],
        "reader": create_key(ws.metadata, "reader")[1],
    }
    user = "/v1/features/user_svc?user_id=1"
    trip = "/v1/features/trip_svc?driver_id=1&region=eu"
    expected = {
        ("anonymous", user): 401,
        ("anonymous", trip): 401,
        ("reader", user): 403,
        ("reader", trip): 403,
        ("admin", user): 200,
        ("admin", trip): 200,
        ("predictor", user): 200,
        ("predictor", trip): 200,
        ("clicker_only", user): 200,
        ("clicker_only", trip): 403,
        ("ghost_only", user): 403,
        ("clicker_only", "/v1/features/no_such_service?x=1"): 403,  # existence not told
    }
    got = {}
    async with serving(ws, auth=True) as client:
        for (who, url), status in expected.items():
            headers = {} if who == "anonymous" else {"Authorization": f"Bearer {keys[who]}"}
            r = await client.get(url, headers=headers)
            got[(who, url)] = r.status_code
            if status != 200:
                body = r.json()
                assert body["code"] == ("unauthenticated" if status == 401 else "forbidden")
                assert body["request_id"] and body["message"]
            post = await client.post(
                url.split("?")[0], json={"entities": {"user_id": [1]}}, headers=headers
            )
            assert (post.status_code in (200, 422)) == (status == 200), (who, url, post.text)
        r = await client.get(trip, headers={"Authorization": f"Bearer {keys['clicker_only']}"})
        assert "no version of them reads feature service 'trip_svc'" in r.json()["message"]
        metrics = (
            await client.get("/metrics", headers={"Authorization": f"Bearer {keys['admin']}"})
        ).text
    assert got == expected
    refused = {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "modelyard_auth_refusals_total"
    }
    assert refused["wrong_model"] >= 3 and refused["wrong_role"] >= 2


# -- definitions that change -----------------------------------------------------------------
async def test_a_new_version_of_a_service_is_served_without_a_restart(
    sqlite_features: Features,
) -> None:
    ws = sqlite_features.ws
    user_view, trip_view = _views("users", "trips")
    async with serving(ws, poll_interval_s=0.1) as client:
        first = _body(await client.get("/v1/features/user_svc?user_id=1"))
        assert (first["version"], first["features"]) == (1, ["user_id", "clicks", "score"])
        ws.features.apply([USER, user_view, FeatureService("user_svc", ["users:clicks"])])
        # A service applied now is found at once, before the next check.
        deadline = time.monotonic() + 10
        while True:
            body = _body(await client.get("/v1/features/user_svc?user_id=1"))
            if body["version"] == 2:
                break
            assert time.monotonic() < deadline, body
            await anyio.sleep(0.05)
    assert body["features"] == ["user_id", "clicks"]
    assert body["results"][1] == first["results"][1]


async def test_a_service_applied_while_serving_is_found_without_waiting_for_a_check(
    sqlite_features: Features,
) -> None:
    ws = sqlite_features.ws
    user_view, _ = _views("users", "trips")
    async with serving(ws, poll_interval_s=0) as client:  # no periodic checks at all
        assert (await client.get("/v1/features/user_svc?user_id=1")).status_code == 200
        ws.features.apply([USER, user_view, FeatureService("fresh_svc", [user_view])])
        started = time.monotonic()
        while (r := await client.get("/v1/features/fresh_svc?user_id=1")).status_code != 200:
            assert r.status_code == 404, r.text
            await anyio.sleep(0.05)
        # An unknown name is checked again at most once per MIN_RECHECK_S (1 s).
        assert time.monotonic() - started < 2.5
        assert _body(r)["results"][1]["values"] == [11]


# -- the servers that carry the routes ----------------------------------------------------------
async def test_a_model_server_also_answers_feature_lookups(sqlite_features: Features) -> None:
    ws = sqlite_features.ws
    _bound_model(ws, "clicker", "user_svc")
    async with serving(ws, ["clicker@production"]) as client:
        predicted = await client.post("/v1/models/clicker/predict", json={"a": 1.0, "user_id": 1})
        assert predicted.status_code == 200 and predicted.json()["prediction"] == {"y": 12.0}
        looked_up = _body(await client.get("/v1/features/user_svc?user_id=1"))
        assert looked_up["results"][1]["values"] == [11]
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert set(paths["/v1/features/{service}"]) == {"get", "post"}
        metrics = (await client.get("/metrics")).text
    assert 'modelyard_feature_requests_total{code="200",service="user_svc"} 1.0' in metrics


def test_the_openapi_document_holds_for_the_feature_routes(sqlite_features: Features) -> None:
    from test_fuzz import _fuzz

    app = create_app(sqlite_features.ws.registry, [], features=sqlite_features.ws.features)
    assert not (failures := _fuzz(app)), "\n\n".join(failures)


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_without_duckdb_the_routes_and_the_command_name_the_extra(
    sqlite_features: Features,
) -> None:
    root = str(sqlite_features.ws.root)
    served = _python(
        "import sys, asyncio, httpx, modelyard\nsys.modules['duckdb'] = None\n"
        "from modelyard.serving import create_app\n"
        "ws = modelyard.Workspace(sys.argv[1])\n"
        "app = create_app(ws.registry, [], features=ws.features, poll_interval_s=0)\n"
        "async def go():\n"
        "    t = httpx.ASGITransport(app=app)\n"
        "    async with httpx.AsyncClient(transport=t, base_url='http://localhost') as c:\n"
        "        r = await c.get('/v1/features/user_svc?user_id=1')\n"
        "        print(r.status_code, r.json()['message'])\n"
        "asyncio.run(go())\n",
        root,
    )
    assert served.returncode == 0, served.stderr[-2000:]
    assert served.stdout.strip() == (
        "503 the feature store needs DuckDB, which is not installed; "
        "pip install 'modelyard[features]'"
    )
    command = _python(
        "import sys\nsys.modules['duckdb'] = None\nfrom modelyard.cli import main\n"
        "main(['features', 'serve', '-w', sys.argv[1], '--port', sys.argv[2]])",
        root,
        str(free_port()),
    )
    assert command.returncode == 2
    assert "pip install 'modelyard[features]'" in command.stderr


def test_modelyard_features_serve_answers_as_a_real_process(sqlite_features: Features) -> None:
    root = sqlite_features.ws.root
    port = free_port()
    log_path = root.parent / f"features-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*CLI, "features", "serve", "-w", str(root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    server = ServerProcess(proc, port, None, log_path)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            got = client.get("/v1/features/both_svc?user_id=2&driver_id=1&region=us")
            posted = client.post(
                "/v1/features/both_svc",
                json={"entities": [{"user_id": 2, "driver_id": 1, "region": "us"}]},
            )
            missing = client.get("/v1/features/both_svc?user_id=2")
            assert client.get("/healthz").status_code == 200
            metrics = client.get("/metrics").text
            assert client.post("/v1/models/x/predict", json={}).status_code == 404
        keys = {"user_id": [2], "driver_id": [1], "region": ["us"]}
        expected = {
            "service": "both_svc",
            "version": 1,
            **_expected(sqlite_features.ws, "both_svc", keys),
        }
        assert _body(got) == expected and _body(posted) == expected
        assert missing.status_code == 422 and "join key 'driver_id'" in missing.json()["message"]
        assert 'modelyard_feature_requests_total{code="200",service="both_svc"} 2.0' in metrics
        lines = server.wait_for_log({"message": "features", "status": 422})
        assert lines[0]["service"] == "both_svc" and lines[0]["request_id"]
    finally:
        assert server.stop() == 0, server.tail()
