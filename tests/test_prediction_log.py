"""The prediction log: every answered prediction is kept, even across kill -9."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

import modelyard
from modelyard.backends.predictions import PredictionLog, open_prediction_log
from modelyard.contracts import Field, Schema
from modelyard.registry import Signature
from modelyard.serving import create_app
from server_support import running_server


@pytest.fixture
def diabetes(sqlite_workspace: modelyard.Workspace) -> tuple[modelyard.Workspace, pd.DataFrame]:
    """A Ridge model on scikit-learn's diabetes data, as diabetes@production."""
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    ws = sqlite_workspace
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, Ridge().fit(x, y), input_example=x.head(20))
    ws.registry.set_alias(
        "diabetes", "production", ws.registry.register("diabetes", logged).version
    )
    return ws, x


def local_log(folder: Path, **options: Any) -> PredictionLog:
    """A log whose store is its own spool folder (the workspace default)."""
    return open_prediction_log(str(folder), spool=folder, **options)


def test_records_are_read_back_and_shipped_by_model_and_day(tmp_path: Path) -> None:
    log = local_log(tmp_path)
    log.start()
    for i in range(3):
        line = log.record(
            request_id=f"r{i}",
            model="m",
            version=1,
            variant="production",
            inputs={"a": [i, i + 1]},
            outputs={"y": [2 * i, 2 * i + 2]},
            latency_ms=0.5,
        )
        anyio.run(log.append, line)
    before = log.read("m").to_pandas()  # from the spool, before shipping
    log.close()  # ships what this process wrote
    after = log.read("m").to_pandas()

    assert len(before) == len(after) == 6
    assert sorted(zip(before["request_id"], before["row"], strict=True)) == sorted(
        zip(after["request_id"], after["row"], strict=True)
    )
    assert list(after.sort_values(["request_id", "row"])["output.y"]) == [0, 2, 2, 4, 4, 6]
    parts = list(tmp_path.glob("model=m/date=*/*.parquet"))
    assert len(parts) == 1 and not list((tmp_path / "segments").glob("seg-*"))
    assert pq.read_table(parts[0]).num_rows == 6


@pytest.mark.parametrize("mode", ["hash", "drop"])
def test_pii_fields_are_hashed_or_dropped_before_they_are_written(
    tmp_path: Path, mode: Any
) -> None:
    log = local_log(tmp_path, pii=mode)
    log.start()
    line = log.record(
        request_id="r",
        model="m",
        version=1,
        variant="v1",
        inputs={"email": ["ann@example.com"], "age": [41]},
        outputs={"y": [1]},
        latency_ms=1.0,
        pii_fields={"email": True},
    )
    log.append_nowait(line)
    log.close()

    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"ann@example.com" not in raw
    row = log.read().to_pylist()[0]
    if mode == "hash":
        assert row["input.email"].startswith("h:") and row["input.age"] == 41
    else:
        assert "input.email" not in row


@pytest.fixture
async def logged_client(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, PredictionLog]]:
    ws, _ = diabetes
    log = local_log(tmp_path / "predictions")
    app = create_app(ws.registry, ["diabetes@production"], prediction_log=log)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c, log


@pytest.mark.anyio
async def test_the_server_logs_each_answered_row_with_its_request_id_and_version(
    logged_client: tuple[httpx.AsyncClient, PredictionLog], diabetes: Any
) -> None:
    client, log = logged_client
    _, x = diabetes
    rows = x.head(3).to_dict(orient="records")
    r = await client.post(
        "/v1/models/diabetes/predict", json=rows, headers={"x-request-id": "batch-1"}
    )
    bad = await client.post("/v1/models/diabetes/predict", json={"age": "old"})

    logged = log.read("diabetes").to_pandas().sort_values("row")
    assert r.status_code == 200 and bad.status_code == 422
    assert list(logged["request_id"]) == ["batch-1"] * 3  # the 422 never reached the model
    assert list(logged["version"]) == [1, 1, 1] and set(logged["variant"]) == {"production"}
    answered = [p["prediction"] for p in r.json()["predictions"]]
    assert list(logged["output.prediction"]) == pytest.approx(answered)
    assert list(logged["input.bmi"]) == pytest.approx([row["bmi"] for row in rows])


def test_no_answered_prediction_is_lost_when_the_server_is_killed(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame],
) -> None:
    ws, x = diabetes
    records = x.head(40).to_dict(orient="records")
    answered: list[str] = []
    with running_server(ws.root, ["diabetes@production"]) as server:
        with httpx.Client(base_url=server.url) as client:
            for i, record in enumerate(records):
                rid = f"kill-{i}"
                r = client.post(
                    "/v1/models/diabetes/predict", json=record, headers={"x-request-id": rid}
                )
                assert r.status_code == 200
                answered.append(rid)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
    log = ws.predictions

    logged = set(log.read("diabetes").column("request_id").to_pylist())
    moved = log.ship()  # the killed writer's lock is gone, so its segment ships

    assert set(answered) <= logged
    assert moved >= len(answered)
    assert not list(log.segments.glob("seg-*"))
    shipped = log.read("diabetes").column("request_id").to_pylist()
    assert set(answered) <= set(shipped) and len(shipped) == len(set(shipped))


def test_a_live_writers_segment_is_left_alone_by_other_shippers(tmp_path: Path) -> None:
    log = local_log(tmp_path)
    other = local_log(tmp_path)  # another process of this host, through its own locks
    log.start()
    line = log.record(
        request_id="r",
        model="m",
        version=1,
        variant="v1",
        inputs={"a": [1]},
        outputs={"y": [2]},
        latency_ms=1.0,
    )
    anyio.run(log.append, line)  # in the spool once this returns
    try:
        assert other.ship() == 0
        assert log.read().num_rows == 1  # readable all the same
    finally:
        log.close()
    assert other.ship() == 0  # its writer shipped it on close
    assert other.read().num_rows == 1


def test_schema_pii_tag_reaches_the_server_log(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace

    def score(frame: pd.DataFrame) -> Any:
        return {"prediction": frame["amount"] * 2}

    sig = Signature(
        inputs=Schema.of(
            Field(name="email", dtype="string", pii=True), Field(name="amount", dtype="float64")
        ),
        outputs=Schema.of(Field(name="prediction", dtype="float64")),
    )
    with ws.start_run("fn") as run:
        logged = ws.registry.log_model(run, score, signature=sig)
    ws.registry.register("pay", logged)
    log = local_log(tmp_path / "p")
    app = create_app(ws.registry, ["pay/1"], prediction_log=log)

    async def go() -> int:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.post("/v1/models/pay/predict", json={"email": "x@y.z", "amount": 2.0})
                return r.status_code

    assert anyio.run(go) == 200
    row = log.read("pay").to_pylist()[0]
    assert row["input.email"].startswith("h:") and row["output.prediction"] == 4.0


def test_reading_since_a_time_skips_older_days_and_keeps_unshipped_records(
    tmp_path: Path,
) -> None:
    import orjson

    from modelyard._time import now_us

    segments = tmp_path / "segments"
    segments.mkdir()
    week_ago = now_us() - 7 * 86_400_000_000
    old = {"request_id": "old", "row": 0, "ts": week_ago, "model": "m", "version": 1}
    new = {**old, "request_id": "new", "ts": now_us()}
    lines = [
        {**r, "variant": "production", "latency_ms": 1.0, "inputs": {"x": 1.0}, "outputs": {}}
        for r in (old, new)
    ]
    # A segment as the first release named them (seg-PID-NS): shipped all the same.
    (segments / "seg-1-1.done").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    log = local_log(tmp_path)
    assert log.ship() == 2
    pending = {**lines[1], "request_id": "pending"}
    (segments / "seg-2-2.open").write_bytes(orjson.dumps(pending) + b"\n")

    everything = log.read("m")
    recent = log.read("m", since=datetime.now(UTC) - timedelta(days=1))

    assert sorted(everything["request_id"].to_pylist()) == ["new", "old", "pending"]
    assert sorted(recent["request_id"].to_pylist()) == ["new", "pending"]


def test_compaction_runs_from_the_cli_and_as_a_scheduled_job(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_support import run_cli
    from modelyard.jobs import run_job
    from monitor_support import exchange

    ws, x = diabetes
    for i in range(3):  # three servers' worth of parts for one model and day
        exchange(ws, "diabetes", [("/v1/models/diabetes/predict", x.iloc[i].to_dict())])
    assert len(list(ws.predictions.segments.parent.glob("model=diabetes/date=*/*.parquet"))) == 3
    time.sleep(1.1)  # parts of segments younger than --min-age are not merged yet

    code, out, err = run_cli(
        capsys, "monitor", "compact", "--min-age", "1s", "--keep-days", "30", "--json",
        "-w", str(ws.root),
    )  # fmt: skip

    assert code == 0, err
    done = json.loads(out)
    assert done["parts_merged"] == 6 and done["parts_written"] == 2  # predictions and index
    assert len(ws.predictions.read("diabetes")) == 3
    assert ws.predictions.lookup(ws.predictions.read()["request_id"].to_pylist()).keys()

    (ws.root / "modelyard.toml").write_text(
        '[jobs.compact]\nfunction = "modelyard.jobs:compact_predictions"\n'
        'schedule = "0 * * * *"\nparams = { keep_days = 0 }\n'
    )
    failed = run_job(modelyard.Workspace(ws.root), "compact")
    assert failed.status == "failed" and "keep_days = 0" in (failed.error or "")

    code, _, err = run_cli(capsys, "monitor", "compact", "--min-age", "soon", "-w", str(ws.root))
    assert code == 2 and "'soon' is not a duration" in err
