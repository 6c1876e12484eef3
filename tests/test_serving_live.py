"""The server as operators run it: several workers, SIGTERM, alias moves under load.

Each test starts its own ``modelyard serve`` process (see server_support.py) over one
workspace of small python-flavor models; each test owns the model names it moves.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

import modelyard
from cli_support import run_cli
from server_support import ServerProcess, running_server

EXAMPLE = pd.DataFrame({"a": [1.0]})
POLL_S = 0.2
_STARTED = re.compile(r"Started server process \[(\d+)\]")  # uvicorn, once per worker


def _times(factor: float) -> Callable[[pd.DataFrame], dict[str, Any]]:
    # Made in a function so that cloudpickle stores it by value: the server process
    # cannot import this test module. Versions differ by factor, so every answer shows
    # which version computed it.
    def times(frame: pd.DataFrame) -> dict[str, Any]:
        return {"y": frame["a"] * factor}

    return times


def _slow(marker: Path, seconds: float) -> Callable[[pd.DataFrame], dict[str, Any]]:
    def slow(frame: pd.DataFrame) -> dict[str, Any]:
        import time

        open(marker, "w").close()  # tells the test that the request is in flight
        time.sleep(seconds)
        return {"y": frame["a"] * 2}

    return slow


@dataclass
class Models:
    root: Path
    marker: Path  # written by the 'sleepy' model when it starts a prediction


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """'fast' v1; 'swap' and 'roll' v1 (y = a) and v2 (y = 2a); 'sleepy' (1 s per call)."""
    base = tmp_path_factory.mktemp("live")
    root, marker = base / "ws", base / "sleepy-started"
    with modelyard.Workspace.init(root) as ws:
        with ws.start_run("train") as run:
            one = ws.registry.log_model(run, _times(1.0), input_example=EXAMPLE)
            two = ws.registry.log_model(run, _times(2.0), input_example=EXAMPLE)
            slow = ws.registry.log_model(run, _slow(marker, 1.0), input_example=EXAMPLE)
        for name, sources in [("fast", [one]), ("swap", [one, two]), ("roll", [one, two])]:
            for source in sources:
                ws.registry.register(name, source)
            ws.registry.set_alias(name, "production", 1)
        ws.registry.register("sleepy", slow)
        ws.registry.set_alias("sleepy", "production", 1)
    return Models(root, marker)


def _predict(client: httpx.Client, server: ServerProcess, model: str, a: float) -> httpx.Response:
    return client.post(f"{server.url}/v1/models/{model}/predict", json={"a": a})


def _requests_by_pid(metrics_dir: Path) -> dict[int, float]:
    """modelyard_requests_total per worker, from prometheus-client's per-process files."""
    out: dict[int, float] = {}
    for path in metrics_dir.glob("modelyard-metrics-*/counter_*.db"):
        pid = int(path.stem.split("_")[-1])
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "modelyard_requests_total":
                    out[pid] = out.get(pid, 0.0) + sample.value
    return out


def _scraped(server: ServerProcess, sample: str) -> float:
    """The sum of ``sample`` over its labels, from the server's /metrics."""
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample
    )


@pytest.mark.slow
def test_two_workers_answer_on_one_port_and_metrics_add_up(models: Models, tmp_path: Path) -> None:
    sent, threads = 200, 8
    # serve() keeps the multiprocess metrics in a temporary folder: put it where we look.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with running_server(
        models.root, ["fast@production"], "--workers", "2", env={"TMPDIR": str(tmp)}
    ) as server:
        # /readyz answered from one worker; wait for the other before sending load.
        server.wait_for_log({"message": "Application startup complete."}, count=2)
        failures: list[str] = []

        def client(share: int, offset: int) -> None:
            # A new connection per request, so that the kernel may hand it to either worker.
            with httpx.Client(headers={"connection": "close"}) as c:
                for i in range(share):
                    try:
                        r = _predict(c, server, "fast", float(offset + i))
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    if r.status_code != 200 or r.json()["prediction"]["y"] != offset + i:
                        failures.append(r.text)

        share = sent // threads
        pool = [threading.Thread(target=client, args=(share, t * share)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert failures == []
        by_pid = _requests_by_pid(tmp)
        messages = [line["message"] for line in server.log_lines()]
        started = {int(m[1]) for m in map(_STARTED.fullmatch, messages) if m}
        assert len(by_pid) == 2 and set(by_pid) == started, (by_pid, started)
        assert all(n > 0 for n in by_pid.values()), by_pid
        assert sum(by_pid.values()) == sent
        assert _scraped(server, "modelyard_requests_total") == sent


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_the_in_flight_request_finish(models: Models, workers: int) -> None:
    models.marker.unlink(missing_ok=True)
    with running_server(models.root, ["sleepy@production"], "--workers", str(workers)) as server:
        answer: list[httpx.Response | Exception] = []

        def call() -> None:
            try:
                with httpx.Client(timeout=30) as c:
                    answer.append(_predict(c, server, "sleepy", 21.0))
            except Exception as exc:  # reported by the assertion below
                answer.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 10
        while not models.marker.exists():
            assert time.monotonic() < deadline, "the request never reached the model"
            time.sleep(0.01)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        caller.join(30)
        code = server.proc.wait(10)
        took = time.monotonic() - signalled
        assert len(answer) == 1 and isinstance(answer[0], httpx.Response), answer
        assert answer[0].status_code == 200
        assert answer[0].json()["prediction"] == {"y": 42.0}
        assert took < 5, f"the server took {took:.1f} s to stop"
        assert not any(line["level"] == "error" for line in server.log_lines()), server.tail()
        assert code == 0


@dataclass
class Answer:
    sent: float
    status: int
    version: int | None
    consistent: bool  # the output is the one that version computes


@pytest.mark.slow
def test_alias_moves_under_load_fail_no_request(models: Models) -> None:
    args = ["--poll-interval", str(POLL_S), "--max-batch-size", "16", "--max-latency-ms", "1"]
    with running_server(models.root, ["swap@production"], *args) as server:
        stop = threading.Event()
        answers: list[list[Answer]] = [[] for _ in range(8)]

        def client(out: list[Answer]) -> None:
            with httpx.Client(timeout=10) as c:  # keep-alive
                i = 0
                while not stop.is_set():
                    i += 1
                    sent = time.monotonic()
                    try:
                        r = _predict(c, server, "swap", float(i))
                    except httpx.HTTPError:
                        out.append(Answer(sent, 0, None, False))
                        continue
                    if r.status_code != 200:
                        out.append(Answer(sent, r.status_code, None, False))
                        continue
                    body = r.json()
                    ok = body["prediction"]["y"] == i * body["version"]
                    out.append(Answer(sent, 200, body["version"], ok))

        pool = [threading.Thread(target=client, args=(out,)) for out in answers]
        for t in pool:
            t.start()
        try:
            with modelyard.Workspace(models.root) as ws:
                for version in [2, 1] * 5:
                    time.sleep(0.4)
                    ws.registry.set_alias("swap", "production", version)
                last_move = time.monotonic()
            time.sleep(1.5)
        finally:
            stop.set()
            for t in pool:
                t.join()
        seen = [a for out in answers for a in out]
        failed = [a for a in seen if a.status != 200]
        assert failed == [], f"{len(failed)} of {len(seen)} requests failed"
        assert all(a.consistent for a in seen), "a response names a version that did not answer"
        assert {a.version for a in seen} == {1, 2}
        settled = [a for a in seen if a.sent > last_move + 5 * POLL_S]
        assert len(settled) > 50 and {a.version for a in settled} == {1}
        state = httpx.get(f"{server.url}/readyz").json()["models"]["swap"]
        assert (state["version"], state["previous"]) == (1, 2)
        # Batches held several requests, so requests of both versions met in the batcher.
        rows = _scraped(server, "modelyard_batch_size_rows_sum")
        assert rows > _scraped(server, "modelyard_batch_size_rows_count")


@pytest.mark.slow
def test_cli_rollback_is_served_within_the_poll_interval(
    models: Models, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--poll-interval", str(POLL_S)]
    with running_server(models.root, ["roll@production"], *args) as server, httpx.Client() as c:

        def version_within(wanted: int, seconds: float) -> float:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                body = _predict(c, server, "roll", 3.0).json()
                if body["version"] == wanted:
                    assert body["prediction"] == {"y": 3.0 * wanted}
                    return time.monotonic() - started
                time.sleep(0.01)
            raise AssertionError(f"still not serving version {wanted} after {seconds} s")

        with modelyard.Workspace(models.root) as ws:
            ws.registry.set_alias("roll", "production", 2)
        version_within(2, 5)
        code, out, err = run_cli(capsys, "models", "rollback", "roll", "-w", str(models.root))
        assert code == 0, err
        assert "roll@production → version 1 (was 2)" in out
        # One poll interval, plus slack for a loaded test machine.
        assert version_within(1, 5) < POLL_S + 1.0
        state = httpx.get(f"{server.url}/readyz").json()["models"]["roll"]
        assert (state["version"], state["previous"]) == (1, 2)
