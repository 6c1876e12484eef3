"""``--max-batch-rows`` and ``--max-string-length``: limits on what one prediction request
may hold, for every model, on ``/v1/models/NAME/predict`` and OIP's ``/v2/.../infer``,
driven in process through httpx's ASGI transport (gRPC, and the limits reaching
``--workers`` processes: ``test_serving_tls.py``). The command line's checks run in process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import modelyard
from cli_support import run_cli
from modelyard.backends.predictions import PredictionLog, open_prediction_log
from modelyard.errors import ConfigError
from modelyard.serving import create_app

pytestmark = pytest.mark.anyio


def _model(calls: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """``y = 2a``; appends each call's row count to the file ``calls``."""

    def model(frame: pd.DataFrame) -> pd.DataFrame:
        with open(calls, "a") as f:
            f.write(f"{len(frame)}\n")
        return pd.DataFrame({"y": frame["a"] * 2})

    return model


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits") / "ws"
    calls = root.parent / "calls"
    examples = {
        "tagged": pd.DataFrame({"a": [1.0], "tag": ["x"]}),
        "plain": pd.DataFrame({"a": [1.0]}),
    }
    with modelyard.Workspace.init(root, environ={}) as ws:
        for name, example in examples.items():
            with ws.start_run(name) as run:
                logged = ws.registry.log_model(run, _model(str(calls)), input_example=example)
            version = ws.registry.register(name, logged).version
            ws.registry.set_alias(name, "production", version)
    return root


def _calls(root: Path) -> list[int]:
    path = root.parent / "calls"
    return [int(n) for n in path.read_text().split()] if path.exists() else []


@asynccontextmanager
async def serving(
    root: Path, log: PredictionLog | None = None, **kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    with modelyard.Workspace(root, environ={}) as ws:
        app = create_app(
            ws.registry,
            ["tagged@production", "plain@production"],
            poll_interval_s=0,
            prediction_log=log,
            **kwargs,
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                (root.parent / "calls").unlink(missing_ok=True)  # the timed calls at load
                yield client


def _rows(n: int, tag: str = "x") -> list[dict[str, Any]]:
    return [{"a": float(i), "tag": tag} for i in range(n)]


def _infer(tensors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inputs": tensors}


async def test_too_many_rows_is_413_naming_the_flag_and_never_reaches_the_model(
    root: Path, tmp_path: Path
) -> None:
    log = open_prediction_log(str(tmp_path), spool=tmp_path)
    async with serving(root, log, max_batch_rows=3) as client:
        r = await client.post("/v1/models/tagged/predict", json=_rows(4))
        assert r.status_code == 413
        body = r.json()
        assert body["code"] == "body_too_large" and body["request_id"]
        assert "4 rows" in body["message"] and "the 3 this server takes" in body["message"]
        assert "--max-batch-rows" in body["message"]
        refused = body["request_id"]

        # OIP: the batch dimension, of a tensor per field and of one 2-D tensor.
        r = await client.post(
            "/v2/models/tagged/infer",
            json=_infer(
                [
                    {"name": "a", "shape": [4], "datatype": "FP64", "data": [1.0] * 4},
                    {"name": "tag", "shape": [4, 1], "datatype": "BYTES", "data": ["x"] * 4},
                ]
            ),
        )
        assert r.status_code == 413 and r.json()["code"] == "body_too_large"
        assert "--max-batch-rows" in r.json()["error"]
        matrix = {"name": "x", "shape": [4, 1], "datatype": "FP64", "data": [1.0] * 4}
        r = await client.post("/v2/models/plain/infer", json=_infer([matrix]))
        assert r.status_code == 413 and "--max-batch-rows" in r.json()["error"]
        assert _calls(root) == []

        # At the limit: served.
        r = await client.post("/v1/models/tagged/predict", json=_rows(3))
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
        served = r.json()["request_id"]
        r = await client.post(
            "/v2/models/plain/infer", json=_infer([{**matrix, "shape": [3, 1], "data": [1.0] * 3}])
        )
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2.0] * 3
        assert _calls(root) == [3, 3]
    logged = set(log.read().to_pandas()["request_id"])
    assert served in logged and refused not in logged


async def test_a_string_longer_than_the_limit_is_422_naming_the_field(root: Path) -> None:
    async with serving(root, max_string_length=5) as client:
        r = await client.post("/v1/models/tagged/predict", json=_rows(2, tag="abcdef"))
        assert r.status_code == 422
        body = r.json()
        assert body["code"] == "validation_failed"
        assert [(e["field"], e["row"]) for e in body["errors"]] == [("tag", 0), ("tag", 1)]
        assert "6 characters, more than the 5" in body["errors"][0]["message"]
        assert "field 'tag'" in body["message"]
        tensors = [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "tag", "shape": [1], "datatype": "BYTES", "data": ["abcdef"]},
        ]
        r = await client.post("/v2/models/tagged/infer", json=_infer(tensors))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tag"
        assert "more than the 5" in r.json()["error"]
        assert _calls(root) == []

        # At the limit, counted in characters (not bytes): served.
        for tag in ("abcde", "ééééé"):
            r = await client.post("/v1/models/tagged/predict", json={"a": 1.0, "tag": tag})
            assert r.status_code == 200, r.text
        r = await client.post(
            "/v2/models/tagged/infer", json=_infer([tensors[0], {**tensors[1], "data": ["abcde"]}])
        )
        assert r.status_code == 200, r.text


async def test_the_defaults_are_10000_rows_and_65536_characters(root: Path) -> None:
    async with serving(root) as client:
        r = await client.post("/v1/models/tagged/predict", json=_rows(10_001))
        assert r.status_code == 413 and "the 10000 this server takes" in r.json()["message"]
        r = await client.post("/v1/models/tagged/predict", json=_rows(10_000))
        assert r.status_code == 200
        r = await client.post("/v1/models/tagged/predict", json={"a": 1.0, "tag": "x" * 65_537})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tag"
        r = await client.post("/v1/models/tagged/predict", json={"a": 1.0, "tag": "x" * 65_536})
        assert r.status_code == 200


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-batch-rows", "0"),
        ("--max-batch-rows", "-5"),
        ("--max-string-length", "0"),
        ("--max-string-length", "-1"),
    ],
)
def test_limits_below_one_are_one_line_cli_errors(
    capsys: pytest.CaptureFixture[str], root: Path, flag: str, value: str
) -> None:
    code, out, err = run_cli(capsys, "serve", "plain@production", "-w", str(root), flag, value)
    assert code == 2, out + err
    assert f"{flag} {value}: expected 1 or more" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_create_app_refuses_limits_below_one(root: Path) -> None:
    with modelyard.Workspace(root, environ={}) as ws:
        with pytest.raises(ConfigError, match="--max-string-length 0"):
            create_app(ws.registry, ["plain@production"], max_string_length=0)
