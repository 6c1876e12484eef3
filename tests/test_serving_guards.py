"""What a client's mistake must not do to the server: reach the model, or grow /metrics.

Driven in process through httpx's ASGI transport (no socket).
"""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from modelyard.contracts import Field, Schema
from modelyard.registry import Signature
from modelyard.serving import create_app


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, Any]:
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data, bunch.target.map({0: "malignant", 1: "benign"})


def _scale(frame: pd.DataFrame) -> pd.Series:
    return frame["x"] * 2.0


@pytest.fixture
def ws(sqlite_workspace: modelyard.Workspace, data: tuple[pd.DataFrame, Any]) -> Any:
    x, y = data
    ws = sqlite_workspace
    with ws.start_run("train") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        logged = ws.registry.log_model(run, model, input_example=x.head(10))
    ws.registry.set_alias("cancer", "production", ws.registry.register("cancer", logged).version)
    # A function that passes infinities through, declared to take them.
    signature = Signature(
        inputs=Schema.of(Field(name="x", dtype="float64", allow_non_finite=True)),
        outputs=Schema.of(Field(name="x", dtype="float64", allow_non_finite=True)),
    )
    with ws.start_run("fn") as run:
        logged_fn = ws.registry.log_model(run, _scale, signature=signature)
    ws.registry.set_alias("scale", "production", ws.registry.register("scale", logged_fn).version)
    return ws


@pytest.fixture
async def client(ws: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ws.registry, ["cancer@production", "scale@production"], poll_interval_s=0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def _record(x: pd.DataFrame, i: int) -> dict[str, float]:
    return {k: float(v) for k, v in x.iloc[i].items()}


def _request_counts(text: str) -> dict[tuple[str, str], float]:
    """(model, code) -> modelyard_requests_total."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modelyard_requests":
            for s in family.samples:
                if s.name == "modelyard_requests_total":
                    key = (s.labels["model"], s.labels["code"])
                    out[key] = out.get(key, 0) + s.value
    return out


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e999", "Infinity"),
        ("1.8e308", "Infinity"),
        ("-1.8e308", "-Infinity"),
    ],
)
async def test_non_finite_numbers_are_a_422_naming_field_and_row_not_a_500(
    client: httpx.AsyncClient, data: Any, token: str, says: str
) -> None:
    x, _ = data
    rows = [_record(x, 0), _record(x, 1)]
    # Row 1's "mean area" holds the bad token (Python's json and pydantic both read it).
    raw = (
        "["
        + ",".join(
            "{"
            + ",".join(
                f'"{k}": {token if (i == 1 and k == "mean area") else repr(v)}'
                for k, v in r.items()
            )
            + "}"
            for i, r in enumerate(rows)
        )
        + "]"
    )
    r = await client.post(
        "/v1/models/cancer/predict", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"
    [error] = r.json()["errors"]
    assert error["field"] == "mean area" and error["row"] == 1
    assert f"value is {says}" in error["message"] and "allow_non_finite=True" in error["message"]
    assert "row 1, field 'mean area'" in r.json()["message"]
    counts = _request_counts((await client.get("/metrics")).text)
    assert counts.get(("cancer", "422")) == 1 and ("cancer", "500") not in counts


@pytest.mark.anyio
async def test_a_field_declared_allow_non_finite_takes_infinity(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/v1/models/scale/predict",
        content=b'[{"x": 1e999}, {"x": -Infinity}, {"x": 1.5}]',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    # JSON has no infinity: the response writes it as null (orjson), the value is not lost
    # on the way in.
    assert [p["x"] for p in r.json()["predictions"]] == [None, None, 3.0]


@pytest.mark.anyio
async def test_an_integer_beyond_int64_is_a_422(sqlite_workspace: modelyard.Workspace) -> None:
    ws = sqlite_workspace
    with ws.start_run("fn") as run:
        logged = ws.registry.log_model(run, _scale, input_example=pd.DataFrame({"x": [1]}))
    ws.registry.register("ints", logged)
    app = create_app(ws.registry, ["ints/1"], poll_interval_s=0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post("/v1/models/ints/predict", json={"x": 2**63})
            ok = await c.post("/v1/models/ints/predict", json={"x": 2**63 - 1})
    assert r.status_code == 422 and "does not fit int64" in r.json()["message"]
    assert ok.status_code == 200


def _binary_fp64(name: str, matrix: np.ndarray[Any, Any]) -> tuple[bytes, dict[str, str]]:
    import orjson

    blob = np.ascontiguousarray(matrix, dtype="<f8").tobytes()
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(matrix.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    )
    headers = {
        "inference-header-content-length": str(len(head)),
        "content-type": "application/octet-stream",
    }
    return head + blob, headers


@pytest.mark.anyio
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
async def test_oip_v2_binary_tensor_with_non_finite_values_is_a_422(
    client: httpx.AsyncClient, data: Any, bad: float
) -> None:
    x, _ = data
    matrix = x.head(3).to_numpy(dtype=np.float64).copy()
    matrix[2, 4] = bad
    body, headers = _binary_fp64("input", matrix)
    r = await client.post("/v2/models/cancer/infer", content=body, headers=headers)
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == x.columns[4] and error["row"] == 2
    assert "allow_non_finite=True" in error["message"] and r.json()["error"]
    matrix[2, 4] = 1.0
    body, headers = _binary_fp64("input", matrix)
    assert (await client.post("/v2/models/cancer/infer", content=body, headers=headers)).is_success


@pytest.mark.anyio
async def test_oip_v2_value_that_overflows_fp32_is_a_422(
    client: httpx.AsyncClient, data: Any
) -> None:
    x, _ = data
    inputs = [
        {"name": n, "shape": [1], "datatype": "FP32", "data": [float(x[n].iloc[0])]}
        for n in x.columns
    ]
    inputs[3]["data"] = [1e300]
    r = await client.post("/v2/models/cancer/infer", json={"inputs": inputs})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == x.columns[3]
    assert "overflows FP32" in r.json()["message"]


def test_batch_scoring_refuses_infinities_like_the_server() -> None:
    from modelyard.contracts import validate_frame
    from modelyard.errors import SchemaValidationError

    schema = Schema.of(Field(name="x", dtype="float64"))
    with pytest.raises(SchemaValidationError, match=r"row 1, field 'x': value is -Infinity"):
        validate_frame(schema, pd.DataFrame({"x": [1.0, -np.inf]}))
    allowed = Schema.of(Field(name="x", dtype="float64", allow_non_finite=True))
    assert validate_frame(allowed, pd.DataFrame({"x": [np.inf]}))["x"].iloc[0] == np.inf


def test_allow_non_finite_is_for_float_fields_only() -> None:
    with pytest.raises(ValueError, match="allow_non_finite only applies to float64"):
        Field(name="n", dtype="int64", allow_non_finite=True)


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))


@pytest.mark.anyio
async def test_made_up_model_names_and_paths_do_not_grow_metrics(
    client: httpx.AsyncClient, data: Any
) -> None:
    x, _ = data
    rng = random.Random(7)
    await client.post("/v1/models/cancer/predict", json=_record(x, 0))
    before = (await client.get("/metrics")).text
    for _ in range(150):
        name = _word(rng)
        await client.post(f"/v1/models/{name}/predict", json={"a": 1})
        await client.post(f"/v2/models/{name}/infer", json={"inputs": []})
        await client.post(f"/v2/models/{name}/versions/3/infer", json={"inputs": []})
        await client.get(f"/v2/models/{name}")
        await client.get(f"/{_word(rng)}/{_word(rng)}")
    after = (await client.get("/metrics")).text

    def series(text: str) -> int:
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))

    # One new series per (label, code): the 404s of every made-up name share "_unknown".
    assert series(after) - series(before) <= 5, after
    counts = _request_counts(after)
    assert counts[("_unknown", "404")] == 450
    assert all(model in ("cancer", "scale", "_unknown") for model, _ in counts)


@pytest.mark.anyio
async def test_feedback_for_a_multi_row_request_needs_row(
    sqlite_workspace: modelyard.Workspace, data: Any
) -> None:
    x, y = data
    ws = sqlite_workspace
    with ws.start_run("train") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        logged = ws.registry.log_model(run, model, input_example=x.head(10))
    ws.registry.set_alias("cancer", "production", ws.registry.register("cancer", logged).version)
    app = create_app(ws.registry, ["cancer@production"], prediction_log=ws.predictions)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            many = await c.post("/v1/models/cancer/predict", json=[_record(x, 0), _record(x, 1)])
            one = await c.post("/v1/models/cancer/predict", json=_record(x, 2))
            rid_many, rid_one = many.json()["request_id"], one.json()["request_id"]
            no_row = await c.post("/v1/feedback", json={"request_id": rid_many, "label": "benign"})
            with_row = await c.post(
                "/v1/feedback", json={"request_id": rid_many, "row": 1, "label": "benign"}
            )
            single = await c.post("/v1/feedback", json={"request_id": rid_one, "label": "benign"})
    assert no_row.status_code == 422
    [error] = no_row.json()["errors"]
    assert error["field"] == "row" and "had 2 rows; send row (0..1)" in error["message"]
    assert with_row.status_code == 200 and single.status_code == 200  # one row: row is optional


@pytest.mark.anyio
async def test_an_input_the_model_overflows_on_is_a_422_and_spares_its_batch(
    ws: Any, data: Any
) -> None:
    """1.79e308 is a valid float64, but the scaler's division overflows: the model raises."""
    import anyio

    from modelyard.serving import ServeOptions

    x, _ = data
    bad = {**_record(x, 0), "worst fractal dimension": 1.79e308}
    app = create_app(
        ws.registry,
        [ServeOptions(ref="cancer@production", max_batch_size=8, max_latency_ms=50)],
        poll_interval_s=0,
    )
    answers: dict[str, httpx.Response] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def post(key: str, body: Any) -> None:
                answers[key] = await c.post("/v1/models/cancer/predict", json=body)

            async with anyio.create_task_group() as tg:  # batched together
                tg.start_soon(post, "bad", bad)
                for i in range(3):
                    tg.start_soon(post, f"good{i}", _record(x, i))
            counts = _request_counts((await c.get("/metrics")).text)
    assert answers["bad"].status_code == 422, answers["bad"].text
    assert answers["bad"].json()["code"] == "input_not_computable"
    assert "floating-point overflow" in answers["bad"].json()["message"]
    assert all(answers[f"good{i}"].status_code == 200 for i in range(3))
    assert counts == {("cancer", "422"): 1, ("cancer", "200"): 3}


@pytest.mark.anyio
async def test_docs_work_offline_every_asset_from_the_server(client: httpx.AsyncClient) -> None:
    import re

    for page in ("/docs", "/redoc"):
        r = await client.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
        urls += re.findall(r"""url: ?["']([^"']+)["']""", r.text)
        assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for url in urls:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url


@pytest.mark.anyio
async def test_docs_examples_come_from_the_models_input_example(
    client: httpx.AsyncClient, data: Any
) -> None:
    x, _ = data
    spec = (await client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/models/cancer/predict"]["post"]
    example = op["requestBody"]["content"]["application/json"]["example"]
    assert example == pytest.approx(_record(x, 0))
    r = await client.post("/v1/models/cancer/predict", json=example)
    assert r.status_code == 200
    # Every answer the route gives is declared, with the error schema.
    assert {"200", "400", "413", "422", "500", "503", "504"} <= set(op["responses"])
    error = op["responses"]["422"]["content"]["application/json"]["schema"]
    assert error["required"] == ["code", "message", "request_id"]
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert any(media.startswith("text/plain") for media in metrics)


@pytest.mark.anyio
async def test_a_text_models_docs_show_a_real_text(sqlite_workspace: modelyard.Workspace) -> None:
    ws = sqlite_workspace
    signature = Signature(
        inputs=Schema.of(Field(name="text", dtype="string", min_length=1, max_length=200)),
        outputs=Schema.of(Field(name="length", dtype="int64")),
    )
    texts = pd.DataFrame({"text": ["Great phone, the battery lasts two days.", "Broke at once."]})
    with ws.start_run("fn") as run:
        logged = ws.registry.log_model(run, _length, signature=signature, input_example=texts)
    ws.registry.register("sentiment", logged)
    with ws.start_run("fn") as run:  # no example: one is built from the field's declaration
        bare = ws.registry.log_model(run, _length, signature=signature)
    ws.registry.register("bare", bare)
    app = create_app(ws.registry, ["sentiment/1", "bare/1"], poll_interval_s=0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            spec = (await c.get("/openapi.json")).json()
            examples = {
                name: spec["paths"][f"/v1/models/{name}/predict"]["post"]["requestBody"]["content"][
                    "application/json"
                ]["example"]
                for name in ("sentiment", "bare")
            }
            answers = [await c.post(f"/v1/models/{n}/predict", json=e) for n, e in examples.items()]
    assert examples["sentiment"] == {"text": "Great phone, the battery lasts two days."}
    assert isinstance(examples["bare"]["text"], str) and examples["bare"]["text"]
    assert [a.status_code for a in answers] == [200, 200]


def _length(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"length": frame["text"].str.len()})
