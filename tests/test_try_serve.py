"""Defects found by trying the server as a user (issue 21's serving side), one test each.

- ``/readyz`` while a back end hangs must answer within a Kubernetes probe's default
  timeout (1 s), or every replica is drained at once for an outage they survive;
- OIP v2 JSON tensors with NaN / Infinity / 1e999 get the same 422 (field and row) as
  ``/v1/.../predict``, not a 400 "not valid JSON" (and reach a field that allows them);
- an OIP v2 request naming one input tensor twice is refused, not silently half-read;
- ``serve --grpc-port`` equal to the HTTP port is a one-line error before anything starts.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pandas as pd
import pytest

import modelyard
from cli_support import run_cli
from fault_proxy import FaultProxy
from modelyard.contracts import Field, Schema
from modelyard.registry import Signature
from modelyard.serving import create_app

KUBERNETES_PROBE_TIMEOUT_S = 1.0  # readinessProbe.timeoutSeconds' default


def double(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"y": frame["a"] * 2})


def _register(ws: modelyard.Workspace, name: str, model: Any, **kw: Any) -> None:
    with ws.start_run(name) as run:
        logged = ws.registry.log_model(run, model, **kw)
    ws.registry.set_alias(name, "production", ws.registry.register(name, logged).version)


async def _client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


# -- /readyz while the metadata database hangs ---------------------------------------------------
@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[tuple[FaultProxy, str]]:
    with FaultProxy("127.0.0.1", 5432) as proxy:
        yield proxy, pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")


@pytest.mark.anyio
async def test_readyz_during_a_hang_fits_a_kubernetes_probe_timeout(
    tmp_path: Path, pg_proxy: tuple[FaultProxy, str]
) -> None:
    proxy, url = pg_proxy
    ws = modelyard.Workspace.init(tmp_path / "ws", metadata_url=url)
    try:
        _register(ws, "steady", double, input_example=pd.DataFrame({"a": [1.0]}))
        app = create_app(ws.registry, ["steady@production"], poll_interval_s=0)
        async for client in _client(app):
            assert (await client.get("/readyz")).json()["status"] == "ready"
            proxy.set_mode("blackhole")  # the pooled connection's next query never returns
            first = await client.get("/readyz")
            assert first.status_code == 200 and first.json()["status"] == "degraded"
            error = first.json()["checks"]["metadata"]["error"]
            waited = float(re.search(r"\(timeout ([\d.]+) s\)", error).group(1))  # type: ignore[union-attr]
            assert waited < KUBERNETES_PROBE_TIMEOUT_S, error
            # The probe is still stuck: later calls say so at once instead of waiting again
            # (1.5 s each before: a kubelet with its default 1 s timeout drained the replica).
            for _ in range(3):
                started = time.perf_counter()
                again = await client.get("/readyz")
                took = time.perf_counter() - started
                assert again.status_code == 200 and again.json()["status"] == "degraded"
                assert not again.json()["checks"]["metadata"]["ok"]
                assert took < 0.5, took
            proxy.set_mode("up")
            # Let the stuck probe end and hand its connection back before the pool closes.
            deadline = time.monotonic() + 15
            while (await client.get("/readyz")).json()["status"] != "ready":
                assert time.monotonic() < deadline, "readiness did not recover"
                await anyio.sleep(0.2)
    finally:
        proxy.set_mode("up")
        ws.close()


# -- OIP v2 JSON tensors ---------------------------------------------------------------------
def _passthrough(frame: pd.DataFrame) -> pd.Series:
    return frame["x"] * 1.0


@pytest.fixture
async def oip_client(sqlite_workspace: modelyard.Workspace) -> AsyncIterator[httpx.AsyncClient]:
    ws = sqlite_workspace
    _register(ws, "plain", double, input_example=pd.DataFrame({"a": [1.0], "b": [2.0]}))
    lenient = Signature(
        inputs=Schema.of(Field(name="x", dtype="float64", allow_non_finite=True)),
        outputs=Schema.of(Field(name="x", dtype="float64", allow_non_finite=True)),
    )
    _register(ws, "lenient", _passthrough, signature=lenient)
    app = create_app(ws.registry, ["plain@production", "lenient@production"], poll_interval_s=0)
    async for client in _client(app):
        yield client


def _tensors(a: str, b: str = "[1.0, 2.0]") -> bytes:
    return (
        '{"inputs": ['
        f'{{"name": "a", "shape": [2], "datatype": "FP64", "data": {a}}},'
        f'{{"name": "b", "shape": [2], "datatype": "FP64", "data": {b}}}]}}'
    ).encode()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "says"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "Infinity")],
)
async def test_oip_json_non_finite_number_is_a_422_naming_field_and_row(
    oip_client: httpx.AsyncClient, token: str, says: str
) -> None:
    # Python's json.dumps writes NaN and Infinity like this; 1e999 is valid JSON.
    r = await oip_client.post(
        "/v2/models/plain/infer",
        content=_tensors(f"[1.0, {token}]"),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "a" and error["row"] == 1
    assert f"value is {says}" in error["message"]


@pytest.mark.anyio
async def test_oip_json_infinity_reaches_a_field_that_allows_it(
    oip_client: httpx.AsyncClient,
) -> None:
    body = (
        b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP64",'
        b' "data": [1e999, -Infinity, 1.5]}]}'
    )
    r = await oip_client.post(
        "/v2/models/lenient/infer", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"][2] == 1.5


@pytest.mark.anyio
async def test_oip_input_tensor_named_twice_is_refused(oip_client: httpx.AsyncClient) -> None:
    body = (
        b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},'
        b'{"name": "b", "shape": [1], "datatype": "FP64", "data": [1.0]},'
        b'{"name": "a", "shape": [1], "datatype": "FP64", "data": [5.0]}]}'
    )
    r = await oip_client.post("/v2/models/plain/infer", content=body)
    assert r.status_code == 422, r.text  # was 200, answered from one of the two "a"
    assert r.json()["errors"][0]["field"] == "a" and "sent twice" in r.json()["message"]


# -- serve: the gRPC port is the HTTP port ---------------------------------------------------------
def test_serve_with_grpc_port_equal_to_port_is_a_one_line_error(
    sqlite_workspace: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    _register(ws, "steady", double, input_example=pd.DataFrame({"a": [1.0]}))
    root = str(ws.root)
    args = ("--port", "18777", "--grpc-port", "18777")
    code, _, err = run_cli(capsys, "serve", "steady@production", "-w", root, *args)
    assert code == 2, err
    assert err.strip().count("\n") == 0 and err.startswith("error:"), err
    assert "--grpc-port 18777 is also the HTTP port" in err
