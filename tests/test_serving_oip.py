"""Open Inference Protocol v2 on a real server, driven by the standard Triton clients.

One ``modelyard serve --grpc-port`` process serves the module; every client test runs
three times: tritonclient.http with binary tensors, with JSON tensors, and
tritonclient.grpc. Results are compared with the scikit-learn model's own output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.utils import InferenceServerException

import modelyard
from server_support import ServerProcess, running_server

ROWS = 20


@dataclass
class Served:
    server: ServerProcess
    x: pd.DataFrame
    model: Pipeline


def _tagger_and_broken() -> tuple[Any, Any]:
    # Defined in a function so that cloudpickle stores them by value: the server
    # process cannot import this test module.
    def tagger(frame: pd.DataFrame) -> dict[str, Any]:
        return {
            "label": frame["city"] + ":" + frame["count"].astype(str),
            "double": frame["count"] * 2,
        }

    def broken(frame: pd.DataFrame) -> Any:
        if (frame["a"] < 0).any():
            raise RuntimeError("negative input")
        return frame["a"] * 2

    return tagger, broken


def _build(root: Path) -> tuple[pd.DataFrame, Pipeline]:
    bunch = load_breast_cancer(as_frame=True)
    x, y = bunch.data, bunch.target.map({0: "malignant", 1: "benign"})
    tagger, broken = _tagger_and_broken()
    with modelyard.Workspace.init(root) as ws:
        with ws.start_run("train") as run:
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
            logged = ws.registry.log_model(run, model, input_example=x.head(10))
            tags = pd.DataFrame({"city": ["oslo", "lima"], "count": [1, 2]})
            logged_tagger = ws.registry.log_model(run, tagger, input_example=tags)
            logged_broken = ws.registry.log_model(
                run, broken, input_example=pd.DataFrame({"a": [1.0]})
            )
        for name, source in [("cancer", logged), ("tagger", logged_tagger)]:
            v = ws.registry.register(name, source)
            ws.registry.set_alias(name, "production", v.version)
        ws.registry.register("broken", logged_broken)
    return x, model


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("oip") / "ws"
    x, model = _build(root)
    refs = ["cancer@production", "tagger@production", "broken/1"]
    with running_server(root, refs, grpc=True) as server:
        yield Served(server, x, model)


@dataclass
class Triton:
    """One Triton client behind the few calls where the http and grpc modules differ."""

    kind: str  # "http-binary", "http-json" or "grpc"
    client: Any

    @property
    def http(self) -> bool:
        return self.kind.startswith("http")

    def tensor(
        self, name: str, array: np.ndarray[Any, Any], datatype: str, *, binary: bool | None = None
    ) -> Any:
        if not self.http:
            t = grpcclient.InferInput(name, list(array.shape), datatype)
            t.set_data_from_numpy(array)
            return t
        if binary is None:
            binary = self.kind == "http-binary"
        t = httpclient.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array, binary_data=binary)
        return t

    def output(self, name: str) -> Any:
        if not self.http:
            return grpcclient.InferRequestedOutput(name)
        return httpclient.InferRequestedOutput(name, binary_data=self.kind == "http-binary")

    def metadata(self, name: str, version: str = "") -> dict[str, Any]:
        if self.http:
            meta: dict[str, Any] = self.client.get_model_metadata(name, version)
            return meta
        meta = self.client.get_model_metadata(name, version, as_json=True)
        for tensor in meta["inputs"] + meta["outputs"]:  # protobuf JSON writes int64 as text
            tensor["shape"] = [int(s) for s in tensor["shape"]]
        return meta

    def response(self, result: Any) -> dict[str, Any]:
        """The response header as a dict, ``parameters`` flattened to plain values."""
        if self.http:
            doc: dict[str, Any] = result.get_response()
            return doc
        doc = result.get_response(as_json=True)
        doc["parameters"] = {k: v["string_param"] for k, v in doc.get("parameters", {}).items()}
        for tensor in doc["outputs"]:  # protobuf JSON writes int64 as text
            tensor["shape"] = [int(s) for s in tensor["shape"]]
        return doc

    def status(self, code: int) -> str:
        """How tritonclient reports an HTTP ``code`` (gRPC: its status code)."""
        grpc_codes = {404: "NOT_FOUND", 422: "INVALID_ARGUMENT", 500: "INTERNAL"}
        return str(code) if self.http else f"StatusCode.{grpc_codes[code]}"


@pytest.fixture(scope="module", params=["http-binary", "http-json", "grpc"])
def triton(request: pytest.FixtureRequest, served: Served) -> Iterator[Triton]:
    kind: str = request.param
    server = served.server
    if kind.startswith("http"):
        client: Any = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    else:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        yield Triton(kind, client)
    finally:
        client.close()


def _strings(values: np.ndarray[Any, Any]) -> list[str]:
    return [v.decode() for v in values.tolist()]


def _assert_matches_model(triton: Triton, result: Any, model: Pipeline, x: pd.DataFrame) -> None:
    assert _strings(result.as_numpy("prediction")) == list(model.predict(x))
    proba = model.predict_proba(x)
    for i, label in enumerate(model.classes_):
        got = result.as_numpy(f"probability_{label}")
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, proba[:, i], rtol=1e-12)


def _assert_still_serving(triton: Triton, served: Served) -> None:
    assert served.server.proc.poll() is None
    assert triton.client.is_server_live()
    x = served.x.iloc[:2].to_numpy()
    result = triton.client.infer("cancer", [triton.tensor("x", x, "FP64")])
    assert _strings(result.as_numpy("prediction")) == list(served.model.predict(served.x[:2]))


# -- health and metadata -------------------------------------------------------------------
def test_server_and_models_are_live_and_ready(triton: Triton) -> None:
    c = triton.client
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("cancer") and c.is_model_ready("tagger", "1")
    meta = c.get_server_metadata(as_json=True) if not triton.http else c.get_server_metadata()
    assert meta["name"] == "modelyard"
    assert "binary_tensor_data" in meta["extensions"]
    if triton.http:  # tritonclient.http reads any non-200 as "not ready"
        assert not c.is_model_ready("nope") and not c.is_model_ready("cancer", "99")
    else:
        for args in [("nope",), ("cancer", "99")]:
            with pytest.raises(InferenceServerException) as err:
                c.is_model_ready(*args)
            assert err.value.status() == "StatusCode.NOT_FOUND"


def test_model_metadata_lists_fields_datatypes_and_versions(triton: Triton, served: Served) -> None:
    meta = triton.metadata("cancer")
    assert meta["name"] == "cancer"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "modelyard_sklearn"
    assert meta["inputs"] == [
        {"name": name, "datatype": "FP64", "shape": [-1]} for name in served.x.columns
    ]
    assert meta["outputs"] == [
        {"name": "prediction", "datatype": "BYTES", "shape": [-1]},
        {"name": "probability_benign", "datatype": "FP64", "shape": [-1]},
        {"name": "probability_malignant", "datatype": "FP64", "shape": [-1]},
    ]
    tagger = triton.metadata("tagger", "1")
    assert [(t["name"], t["datatype"]) for t in tagger["inputs"]] == [
        ("city", "BYTES"),
        ("count", "INT64"),
    ]
    assert [(t["name"], t["datatype"]) for t in tagger["outputs"]] == [
        ("label", "BYTES"),
        ("double", "INT64"),
    ]
    assert tagger["platform"] == "modelyard_python"


# -- inference -------------------------------------------------------------------------------
def test_one_2d_fp64_tensor_matches_the_sklearn_model(triton: Triton, served: Served) -> None:
    x = served.x.iloc[:ROWS]
    result = triton.client.infer("cancer", [triton.tensor("x", x.to_numpy(), "FP64")])
    response = triton.response(result)
    assert response["model_name"] == "cancer" and response["model_version"] == "1"
    assert [o["shape"] for o in response["outputs"]] == [[ROWS]] * 3
    _assert_matches_model(triton, result, served.model, x)


def test_one_tensor_per_field_with_a_subset_of_outputs(triton: Triton, served: Served) -> None:
    x = served.x.iloc[ROWS : 2 * ROWS]
    # Over HTTP, every other field travels as binary and the rest as JSON.
    inputs = [
        triton.tensor(name, x[name].to_numpy(), "FP64", binary=i % 2 == 0)
        for i, name in enumerate(x.columns)
    ]
    wanted = triton.output("probability_malignant")
    result = triton.client.infer("cancer", inputs, outputs=[wanted])
    names = [o["name"] for o in triton.response(result)["outputs"]]
    assert names == ["probability_malignant"]
    assert result.as_numpy("prediction") is None
    malignant = list(served.model.classes_).index("malignant")
    np.testing.assert_allclose(
        result.as_numpy("probability_malignant"),
        served.model.predict_proba(x)[:, malignant],
        rtol=1e-12,
    )


def test_fp32_input_is_accepted(triton: Triton, served: Served) -> None:
    x32 = served.x.iloc[:ROWS].to_numpy(dtype=np.float32)
    result = triton.client.infer("cancer", [triton.tensor("x", x32, "FP32")])
    # The server widens FP32 to the signature's float64; so does this reference.
    as_sent = pd.DataFrame(x32.astype(np.float64), columns=served.x.columns)
    _assert_matches_model(triton, result, served.model, as_sent)


def test_bytes_and_int64_fields(triton: Triton) -> None:
    cities = np.array([b"oslo", "zürich".encode(), b""], dtype=object)
    counts = np.array([3, -4, 2**40], dtype=np.int64)
    inputs = [triton.tensor("city", cities, "BYTES"), triton.tensor("count", counts, "INT64")]
    result = triton.client.infer("tagger", inputs)
    assert _strings(result.as_numpy("label")) == ["oslo:3", "zürich:-4", f":{2**40}"]
    double = result.as_numpy("double")
    assert double.dtype == np.int64
    assert double.tolist() == [6, -8, 2**41]
    datatypes = {o["name"]: o["datatype"] for o in triton.response(result)["outputs"]}
    assert datatypes == {"label": "BYTES", "double": "INT64"}


def test_model_version_in_the_request(triton: Triton, served: Served) -> None:
    x = served.x.iloc[:3].to_numpy()
    result = triton.client.infer("cancer", [triton.tensor("x", x, "FP64")], model_version="1")
    assert triton.response(result)["model_version"] == "1"
    with pytest.raises(InferenceServerException) as err:
        triton.client.infer("cancer", [triton.tensor("x", x, "FP64")], model_version="99")
    assert err.value.status() == triton.status(404)
    assert "version 99" in err.value.message() and "'cancer'" in err.value.message()


def test_response_parameters_carry_variant_and_request_id(triton: Triton, served: Served) -> None:
    x = served.x.iloc[:1].to_numpy()
    rid = f"oip-{triton.kind}"
    result = triton.client.infer(
        "cancer", [triton.tensor("x", x, "FP64")], request_id="c-1", headers={"x-request-id": rid}
    )
    response = triton.response(result)
    assert response["parameters"] == {"variant": "production", "request_id": rid}
    assert response["id"] == "c-1"
    [line] = served.server.wait_for_log({"message": "predict", "request_id": rid})
    protocol = "v2" if triton.http else "grpc"
    assert line["protocol"] == protocol and line["status"] == 200
    assert line["model"] == "cancer" and line["version"] == 1 and line["variant"] == "production"


# -- errors ----------------------------------------------------------------------------------
def test_unknown_model_is_not_found_and_named(triton: Triton, served: Served) -> None:
    x = served.x.iloc[:1].to_numpy()
    with pytest.raises(InferenceServerException) as err:
        triton.client.infer("nope", [triton.tensor("x", x, "FP64")])
    assert err.value.status() == triton.status(404)
    assert "'nope'" in err.value.message() and "cancer" in err.value.message()
    _assert_still_serving(triton, served)


def _bad_inputs(triton: Triton, x: pd.DataFrame, case: str) -> tuple[str, list[Any], str]:
    """(model, inputs, the field the error must name) for one kind of bad request."""
    city = triton.tensor("city", np.array([b"oslo", b"lima"], dtype=object), "BYTES")
    count = triton.tensor("count", np.array([1, 2], dtype=np.int64), "INT64")
    if case == "2d-shape":
        return "cancer", [triton.tensor("x", x.iloc[:2, :29].to_numpy(), "FP64")], "x"
    if case == "field-shape":
        wide = triton.tensor("count", np.array([[1, 2], [3, 4]], dtype=np.int64), "INT64")
        return "tagger", [city, wide], "count"
    if case == "unknown-input":
        extra = triton.tensor("county", np.array([1, 2], dtype=np.int64), "INT64")
        return "tagger", [city, count, extra], "county"
    if case == "missing-field":
        return "tagger", [city], "count"
    if case == "wrong-datatype":
        return "tagger", [city, triton.tensor("count", np.array([b"a", b"b"]), "BYTES")], "count"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["2d-shape", "field-shape", "unknown-input", "missing-field", "wrong-datatype"]
)
def test_bad_input_names_the_field_and_the_server_stays_up(
    triton: Triton, served: Served, case: str
) -> None:
    model, inputs, field = _bad_inputs(triton, served.x, case)
    with pytest.raises(InferenceServerException) as err:
        triton.client.infer(model, inputs)
    assert err.value.status() == triton.status(422)
    assert f"field '{field}'" in err.value.message()
    _assert_still_serving(triton, served)


def test_grpc_model_metadata_of_unknown_model_and_version_is_not_found(served: Served) -> None:
    with grpcclient.InferenceServerClient(f"127.0.0.1:{served.server.grpc_port}") as client:
        with pytest.raises(InferenceServerException, match="'nope'") as err:
            client.get_model_metadata("nope")
        assert err.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException, match="version 99") as err:
            client.get_model_metadata("cancer", "99")
        assert err.value.status() == "StatusCode.NOT_FOUND"


def test_http_model_metadata_of_unknown_model_and_version_is_not_found(served: Served) -> None:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.server.port}")
    try:
        with pytest.raises(InferenceServerException, match="'nope'") as err:
            client.get_model_metadata("nope")
        assert err.value.status() == "404"
        with pytest.raises(InferenceServerException, match="version 99"):
            client.get_model_metadata("cancer", "99")
    finally:
        client.close()


def test_grpc_model_failure_is_internal_with_the_request_id(served: Served) -> None:
    with grpcclient.InferenceServerClient(f"127.0.0.1:{served.server.grpc_port}") as client:
        bad = grpcclient.InferInput("a", [1], "FP64")
        bad.set_data_from_numpy(np.array([-1.0]))
        with pytest.raises(InferenceServerException) as err:
            client.infer("broken", [bad], request_id="g-fail")
        assert err.value.status() == "StatusCode.INTERNAL"
        assert "'broken'" in err.value.message() and "g-fail" in err.value.message()
        [line] = served.server.wait_for_log({"message": "predict", "request_id": "g-fail"})
        assert line["status"] == 500


def test_http_model_failure_is_a_json_500_logged_as_500(served: Served) -> None:
    body = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [-1.0]}]}
    r = httpx.post(
        f"{served.server.url}/v2/models/broken/infer", json=body, headers={"x-request-id": "h-fail"}
    )
    [line] = served.server.wait_for_log({"message": "predict", "request_id": "h-fail"})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert "'broken'" in r.json()["error"] and r.json()["request_id"] == "h-fail"
    assert line["status"] == 500


def _infer_body(**change: Any) -> dict[str, Any]:
    city = {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["oslo"]}
    count = {"name": "count", "shape": [1], "datatype": "INT64", "data": [1], **change}
    return {"inputs": [city, count]}


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        pytest.param(b"{not json", 400, "JSON", id="broken-json"),
        pytest.param({"inputs": []}, 400, "inputs", id="no-inputs"),
        pytest.param({"inputs": [{"name": "city"}]}, 400, "datatype", id="no-datatype"),
        pytest.param(_infer_body(data=["x"]), 422, "count", id="text-for-int64"),
        pytest.param(
            _infer_body(shape=["one"]),
            400,
            "count",
            id="text-shape",
        ),
        pytest.param(
            {**_infer_body(), "outputs": 5},
            400,
            "outputs",
            id="outputs-not-a-list",
        ),
        pytest.param(
            _infer_body(data=[1.5]),
            422,
            "count",
            id="fraction-for-int64",
        ),
    ],
)
def test_malformed_rest_requests_are_json_4xx(
    served: Served, body: Any, status: int, mentions: str
) -> None:
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    r = httpx.post(f"{served.server.url}/v2/models/tagger/infer", content=content)
    assert r.status_code == status, r.text
    assert mentions in r.json()["error"]
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_http_echoes_the_x_request_id_header(served: Served) -> None:
    body = _infer_body()
    url = f"{served.server.url}/v2/models/tagger/infer"
    r = httpx.post(url, json=body, headers={"x-request-id": "echo-1"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "echo-1"
    assert r.headers["x-model-variant"] == "production"
    assert r.json()["parameters"] == {"variant": "production", "request_id": "echo-1"}
    binary = {**body, "parameters": {"binary_data_output": True}}
    r = httpx.post(url, json=binary, headers={"x-request-id": "echo-2"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "echo-2"
    assert int(r.headers["inference-header-content-length"]) < len(r.content)
