"""A prediction log that cannot write: requests fail fast (503), /readyz turns red, the
gauge says so, acknowledged predictions stay, and the writer recovers by itself.

The faults are real: the writer's file closed or replaced by /dev/full (writes answer
ENOSPC) or by a full pipe (a write that hangs), its thread hit by an exception, and a
full tmpfs where mounting is allowed.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pandas as pd
import pytest
import tritonclient.grpc.aio as grpcclient
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

import modelyard
from modelyard.backends.predictions import PredictionLog, open_prediction_log
from modelyard.serving import create_app
from server_support import free_port

pytestmark = pytest.mark.anyio

RETRY_S = 3.0  # long enough to see the failed state, short enough to see it recover


@pytest.fixture
def diabetes(sqlite_workspace: modelyard.Workspace) -> tuple[modelyard.Workspace, pd.DataFrame]:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    ws = sqlite_workspace
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, Ridge().fit(x, y), input_example=x.head(20))
    ws.registry.set_alias(
        "diabetes", "production", ws.registry.register("diabetes", logged).version
    )
    return ws, x


@asynccontextmanager
async def _serve(
    ws: modelyard.Workspace, log: PredictionLog, grpc_port: int | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ws.registry, ["diabetes@production"], prediction_log=log, grpc_port=grpc_port)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def _log(folder: Path, **options: Any) -> PredictionLog:
    return open_prediction_log(str(folder), spool=folder, retry_s=RETRY_S, **options)


async def _predict(client: httpx.AsyncClient, row: dict[str, Any], rid: str) -> httpx.Response:
    started = time.monotonic()
    r = await client.post("/v1/models/diabetes/predict", json=row, headers={"x-request-id": rid})
    r.extensions["seconds"] = time.monotonic() - started
    return r


async def _predict_into(
    answers: list[httpx.Response], client: httpx.AsyncClient, row: dict[str, Any]
) -> None:
    answers.append(await _predict(client, row, "hung"))


async def _metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} not on /metrics"
    return values[0]


async def _wait_ready(client: httpx.AsyncClient, within_s: float) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        r = await client.get("/readyz")
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        await anyio.sleep(0.1)


def _writer_fd(log: PredictionLog) -> int:
    fd = log._writers["predictions"]._fd  # the fault is injected into this very file
    assert fd is not None
    return fd


def _close_file(log: PredictionLog) -> None:
    os.close(_writer_fd(log))


def _replace_with_dev_full(log: PredictionLog) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, _writer_fd(log))  # every later write() answers ENOSPC
    os.close(full)


def _crash_thread(log: PredictionLog) -> None:
    writer = log._writers["predictions"]
    thread = writer._thread
    assert thread is not None and thread.ident is not None
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(RuntimeError)
    )
    assert hit == 1
    # The exception lands when the thread next runs Python code; on a local disk requests
    # write their own lines and do not wake it, so wake it (a blank line, skipped by readers)
    # and let it fail before the next request.
    writer.append_nowait(b"\n")
    deadline = time.monotonic() + 5.0
    while writer.problem is None and time.monotonic() < deadline:
        time.sleep(0.005)


def _stop_thread(log: PredictionLog) -> None:
    """The writer thread ends (as if its loop returned) without a word to anyone."""
    writer = log._writers["predictions"]
    assert writer._thread is not None
    writer._queue.put(None)
    writer._thread.join(5)
    assert not writer._thread.is_alive()


@contextmanager
def _hung_write(log: PredictionLog) -> Iterator[None]:
    """The writer's file becomes a full pipe: the next write() blocks, like a dead NFS."""
    fd = _writer_fd(log)
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    os.dup2(write_end, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)  # the disk answers again
        os.close(saved)
        os.read(read_end, 1 << 20)  # room in the pipe: the blocked write returns
        writer = log._writers["predictions"]
        deadline = time.monotonic() + 5.0
        while writer._busy_since and time.monotonic() < deadline:
            time.sleep(0.01)  # closed before the write returned, the pipe would answer EPIPE
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("fault", [_close_file, _replace_with_dev_full, _crash_thread])
async def test_a_failing_writer_answers_503_fast_turns_readyz_red_and_recovers(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], tmp_path: Path, fault: Any
) -> None:
    ws, x = diabetes
    rows = x.head(5).to_dict(orient="records")
    log = _log(tmp_path / "predictions")
    async with _serve(ws, log) as client:
        before = [await _predict(client, rows[0], f"ok-{i}") for i in range(3)]
        assert [r.status_code for r in before] == [200, 200, 200]
        assert await _metric(client, "modelyard_prediction_log_up") == 1

        fault(log)
        during = [await _predict(client, rows[1], f"fault-{i}") for i in range(2)]
        ready = await client.get("/readyz")
        up = await _metric(client, "modelyard_prediction_log_up")
        rejected = await _metric(
            client, 'modelyard_prediction_log_failures_total{outcome="rejected"}'
        )

        # The thread may take the first line before the exception lands; the next is refused.
        assert during[-1].status_code == 503, during[-1].text
        for r in during:
            assert r.extensions["seconds"] < 1.0  # answered at once, never a hang
            if r.status_code != 200:
                assert r.status_code == 503
                assert r.json()["code"] == "prediction_log_unavailable"
                assert r.json()["request_id"] == r.headers["x-request-id"]
        assert ready.status_code == 503
        assert ready.json()["prediction_log"]["ready"] is False
        assert "predictions" in ready.json()["prediction_log"]["errors"]
        assert up == 0 and rejected >= 1

        recovered = await _wait_ready(client, RETRY_S * 3)
        assert recovered.status_code == 200, recovered.text
        after = await _predict(client, rows[2], "after")
        assert after.status_code == 200
        assert await _metric(client, "modelyard_prediction_log_up") == 1
    logged = set(log.read("diabetes").column("request_id").to_pylist())
    assert {"ok-0", "ok-1", "ok-2", "after"} <= logged
    refused = {r.request.headers["x-request-id"] for r in during if r.status_code == 503}
    assert not refused & logged


async def test_a_hung_write_is_refused_once_it_takes_too_long_and_heals_when_it_returns(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], tmp_path: Path
) -> None:
    ws, x = diabetes
    row = x.head(1).to_dict(orient="records")[0]
    log = _log(tmp_path / "predictions", write_timeout_s=0.5)
    async with _serve(ws, log) as client:
        assert (await _predict(client, row, "before")).status_code == 200
        hung: list[httpx.Response] = []
        with _hung_write(log):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_predict_into, hung, client, row)
                await anyio.sleep(1.0)  # past write_timeout_s
                refused = await _predict(client, row, "refused")
                ready = await client.get("/readyz")
            assert refused.status_code == 503 and refused.extensions["seconds"] < 1.0
            assert hung[0].status_code == 503  # answered by the next request, not left hanging
            assert ready.status_code == 503
        # the disk answers again: the blocked write returns
        assert (await _wait_ready(client, 5.0)).status_code == 200
        assert (await _predict(client, row, "after")).status_code == 200
    logged = set(log.read("diabetes").column("request_id").to_pylist())
    assert {"before", "after"} <= logged and "refused" not in logged


async def test_serve_unlogged_answers_and_stays_ready_but_counts_and_alerts(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], tmp_path: Path
) -> None:
    ws, x = diabetes
    row = x.head(1).to_dict(orient="records")[0]
    log = _log(tmp_path / "predictions", on_failure="serve_unlogged")
    async with _serve(ws, log) as client:
        assert (await _predict(client, row, "logged")).status_code == 200
        _replace_with_dev_full(log)
        answers = [await _predict(client, row, f"unlogged-{i}") for i in range(3)]
        ready = await client.get("/readyz")
        up = await _metric(client, "modelyard_prediction_log_up")
        unlogged = await _metric(
            client, 'modelyard_prediction_log_failures_total{outcome="unlogged"}'
        )

        assert [r.status_code for r in answers] == [200, 200, 200]
        assert ready.status_code == 200
        assert "predictions" in ready.json()["prediction_log"]["errors"]
        assert up == 0 and unlogged >= 2
    logged = set(log.read("diabetes").column("request_id").to_pylist())
    assert "logged" in logged and "unlogged-2" not in logged


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a disk that really fills (needs root and mount rights)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); /dev/full covers it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:  # ENOSPC: the disk is full
        pass
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_refuses_fast_keeps_every_acknowledged_row_and_recovers_when_freed(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], small_disk: Path
) -> None:
    ws, x = diabetes
    row = x.head(1).to_dict(orient="records")[0]
    log = _log(small_disk)
    answered: list[str] = []
    async with _serve(ws, log) as client:
        for i in range(3):
            assert (await _predict(client, row, f"before-{i}")).status_code == 200
            answered.append(f"before-{i}")
        filler = _fill(small_disk)
        # The segment's last page may still take a few lines; then the disk is full.
        for i in range(200):
            r = await _predict(client, row, f"full-{i}")
            assert r.extensions["seconds"] < 1.0
            if r.status_code != 200:
                break
            answered.append(f"full-{i}")
        assert r.status_code == 503 and r.json()["code"] == "prediction_log_unavailable"
        assert (await client.get("/readyz")).status_code == 503
        await anyio.sleep(RETRY_S + 0.5)  # a retry while the disk is still full fails too
        assert (await client.get("/readyz")).status_code == 503
        assert (await _predict(client, row, "still-full")).status_code == 503
        assert set(answered) <= set(log.read("diabetes").column("request_id").to_pylist())

        filler.unlink()  # the fault clears: no restart needed
        assert (await _wait_ready(client, RETRY_S * 3)).status_code == 200
        assert (await _predict(client, row, "freed")).status_code == 200
        answered.append("freed")
    assert set(answered) <= set(log.read("diabetes").column("request_id").to_pylist())


async def test_grpc_server_ready_gives_the_answer_of_readyz_when_the_log_fails(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], tmp_path: Path
) -> None:
    """A gRPC load balancer drains the replica exactly when an HTTP one would."""
    ws, x = diabetes
    row = x.head(1).to_dict(orient="records")[0]
    log = _log(tmp_path / "predictions")
    port = free_port()
    async with _serve(ws, log, grpc_port=port) as client:
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            assert await grpc.is_server_ready() is True
            _replace_with_dev_full(log)
            assert (await _predict(client, row, "refused")).status_code == 503
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/v2/health/ready")).status_code == 503
            assert await grpc.is_server_ready() is False
            # Model readiness is the model's own (loaded), over HTTP and gRPC alike.
            http_model = await client.get("/v2/models/diabetes/ready")
            assert await grpc.is_model_ready("diabetes") is (http_model.status_code == 200)

            assert (await _wait_ready(client, RETRY_S * 3)).status_code == 200
            assert await grpc.is_server_ready() is True
        finally:
            await grpc.close()


async def test_metrics_show_a_stopped_writer_without_a_readyz_call(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], tmp_path: Path
) -> None:
    """Nothing tells the gauge that the thread ended: the scrape itself must look."""
    ws, x = diabetes
    row = x.head(1).to_dict(orient="records")[0]
    log = _log(tmp_path / "predictions")
    async with _serve(ws, log) as client:
        assert (await _predict(client, row, "before")).status_code == 200
        assert await _metric(client, "modelyard_prediction_log_up") == 1
        _stop_thread(log)
        assert await _metric(client, "modelyard_prediction_log_up") == 0


async def test_metrics_show_a_hung_write_without_a_readyz_call(
    diabetes: tuple[modelyard.Workspace, pd.DataFrame], tmp_path: Path
) -> None:
    ws, x = diabetes
    row = x.head(1).to_dict(orient="records")[0]
    log = _log(tmp_path / "predictions", write_timeout_s=0.5)
    async with _serve(ws, log) as client:
        assert (await _predict(client, row, "before")).status_code == 200
        hung: list[httpx.Response] = []
        async with anyio.create_task_group() as tasks:
            with _hung_write(log):
                tasks.start_soon(_predict_into, hung, client, row)
                await anyio.sleep(1.0)  # past write_timeout_s, with no other request
                up = await _metric(client, "modelyard_prediction_log_up")
        assert up == 0
        assert (await _metric(client, "modelyard_prediction_log_up")) == 1  # the write returned
