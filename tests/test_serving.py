"""The model server, driven in process through httpx's ASGI transport (no socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.serving import create_app


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, Any]:
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data, bunch.target.map({0: "malignant", 1: "benign"})


@pytest.fixture
def served(sqlite_workspace: modelyard.Workspace, data: tuple[pd.DataFrame, Any]) -> Any:
    x, y = data
    ws = sqlite_workspace
    with ws.start_run("train") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        logged = ws.registry.log_model(run, model, input_example=x.head(10))
        run.log_metric("accuracy", model.score(x, y))
    v = ws.registry.register("cancer", logged)
    ws.registry.set_alias("cancer", "production", v.version)

    def broken(frame: pd.DataFrame) -> Any:
        if (frame["a"] < 0).any():
            raise RuntimeError("negative input")
        return frame["a"] * 2

    with ws.start_run("fn") as run:
        logged_fn = ws.registry.log_model(run, broken, input_example=pd.DataFrame({"a": [1.0]}))
    ws.registry.register("doubler", logged_fn)
    return ws, model


@pytest.fixture
async def client(served: Any) -> AsyncIterator[httpx.AsyncClient]:
    ws, _ = served
    app = create_app(ws.registry, ["cancer@production", "doubler/1"])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def _record(x: pd.DataFrame, i: int) -> dict[str, float]:
    return {k: float(v) for k, v in x.iloc[i].items()}


@pytest.mark.anyio
async def test_predict_one_record_matches_the_model(
    client: httpx.AsyncClient, served: Any, data: Any
) -> None:
    x, _ = data
    _, model = served
    r = await client.post("/v1/models/cancer/predict", json=_record(x, 0))
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "cancer" and body["version"] == 1
    assert body["request_id"] == r.headers["x-request-id"]
    pred = body["prediction"]
    assert pred["prediction"] == model.predict(x.iloc[[0]])[0]
    proba = model.predict_proba(x.iloc[[0]])[0]
    classes = list(model.classes_)
    assert pred["probability_malignant"] == pytest.approx(proba[classes.index("malignant")])


@pytest.mark.anyio
async def test_predict_a_list_returns_one_prediction_per_record(
    client: httpx.AsyncClient, served: Any, data: Any
) -> None:
    x, _ = data
    _, model = served
    records = [_record(x, i) for i in range(100)]  # above the inline limit: thread pool
    r = await client.post("/v1/models/cancer/predict", json=records)
    assert r.status_code == 200
    got = [p["prediction"] for p in r.json()["predictions"]]
    assert got == list(model.predict(x.iloc[:100]))


@pytest.mark.anyio
async def test_request_id_is_taken_from_the_header(client: httpx.AsyncClient, data: Any) -> None:
    x, _ = data
    r = await client.post(
        "/v1/models/cancer/predict", json=_record(x, 1), headers={"X-Request-ID": "req-42"}
    )
    assert r.json()["request_id"] == "req-42"
    assert r.headers["x-request-id"] == "req-42"


@pytest.mark.anyio
async def test_bad_input_gets_422_with_one_message_per_field(
    client: httpx.AsyncClient, data: Any
) -> None:
    x, _ = data
    good = _record(x, 0)
    bad = {**good, "mean radius": "big", "worst area": None, "mean radiuss": 1.0}
    del bad["mean texture"]
    r = await client.post("/v1/models/cancer/predict", json=[good, bad])
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_failed" and body["request_id"]
    by_field = {e["field"]: e for e in body["errors"]}
    assert set(by_field) == {"mean radius", "worst area", "mean texture", "mean radiuss"}
    assert all(e["row"] == 1 for e in body["errors"])
    assert "float64" in by_field["mean radius"]["message"]
    assert "missing" in by_field["mean texture"]["message"]
    assert "did you mean 'mean radius'" in by_field["mean radiuss"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content", [b"{not json", b"42", b"[]", b'"text"'], ids=["broken", "number", "empty", "str"]
)
async def test_malformed_bodies_are_422_not_500(client: httpx.AsyncClient, content: bytes) -> None:
    r = await client.post(
        "/v1/models/cancer/predict", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"


@pytest.mark.anyio
async def test_a_failing_model_answers_500_json_and_the_server_keeps_serving(
    client: httpx.AsyncClient, server_log: list[dict[str, Any]]
) -> None:
    r = await client.post("/v1/models/doubler/predict", json={"a": -1.0})
    assert r.status_code == 500
    assert r.json()["code"] == "prediction_failed"
    assert r.json()["request_id"] == r.headers["x-request-id"]
    failure = [line for line in server_log if line["message"] == "prediction failed"]
    assert failure and "negative input" in failure[0]["exception"]
    r = await client.post("/v1/models/doubler/predict", json={"a": 2.0})
    assert r.status_code == 200
    assert r.json()["prediction"] == {"a": 4.0}  # a returned Series keeps its name


@pytest.mark.anyio
async def test_unknown_model_and_route_are_json_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/models/nope/predict", json={})
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert "cancer" in r.json()["message"]
    r = await client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["request_id"]


@pytest.mark.anyio
async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"]["cancer"] == {
        "ref": "cancer@production",
        "version": 1,
        "previous": None,
        "ready": True,
    }


@pytest.mark.anyio
async def test_openapi_is_built_from_the_signature(client: httpx.AsyncClient, data: Any) -> None:
    x, _ = data
    spec = (await client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/models/cancer/predict"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert set(schema["properties"]) == set(x.columns)
    assert schema["properties"]["mean radius"]["type"] == "number"
    assert set(schema["required"]) == set(x.columns)
    assert "422" in op["responses"]
    models = (await client.get("/v1/models")).json()["models"]
    assert {m["name"] for m in models} == {"cancer", "doubler"}


@pytest.mark.anyio
async def test_every_request_logs_model_version_request_id_and_latency(
    client: httpx.AsyncClient, server_log: list[dict[str, Any]], data: Any
) -> None:
    x, _ = data
    await client.post(
        "/v1/models/cancer/predict", json=_record(x, 0), headers={"x-request-id": "L1"}
    )
    await client.post("/v1/models/cancer/predict", json={"bad": 1}, headers={"x-request-id": "L2"})
    lines = {line["request_id"]: line for line in server_log if line["message"] == "predict"}
    assert lines["L1"]["model"] == "cancer" and lines["L1"]["version"] == 1
    assert lines["L1"]["status"] == 200 and lines["L1"]["latency_ms"] >= 0
    assert lines["L2"]["status"] == 422


def test_unknown_reference_fails_before_serving(served: Any) -> None:
    ws, _ = served
    with pytest.raises(NotFoundError, match="no alias 'staging'"):
        create_app(ws.registry, ["cancer@staging"])
    with pytest.raises(InvalidInputError):
        create_app(ws.registry, ["cancer/zero"])
