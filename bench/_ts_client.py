"""Client side of bench/tracking_server.py; runs under bench/.venv-mlflow/bin/python.

Reads one JSON object of settings from argv[1], drives the ``mlflow`` client against the
tracking server at ``cfg["uri"]`` and prints one JSON object of timings to stdout. The
same code drives both servers, so the only difference between the sides is the server. It
imports nothing from modelyard. The client retries nothing: a failed call is counted and
its first messages kept, so that an error cannot hide in a slow number.
"""

from __future__ import annotations

import os

os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from typing import Any  # noqa: E402

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

from _mlflow_worker import run_values  # noqa: E402
from _procs import tree_cpu_seconds  # noqa: E402

SEARCH_EXPERIMENT = "search"


class Errors:
    """Failed calls of one phase: how many, and the first few messages."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []
        self._lock = threading.Lock()

    def add(self, what: str, exc: Exception) -> None:
        with self._lock:
            self.count += 1
            if len(self.first) < 5:
                self.first.append(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")


class Meter:
    """Wall time, this client's CPU and the server's (its process tree) over one phase."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> Meter:
        self.server0 = sum(tree_cpu_seconds(self.server_pid).values())
        self.client0 = sum(os.times()[:2])
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.client_cpu = sum(os.times()[:2]) - self.client0
        self.server_cpu = sum(tree_cpu_seconds(self.server_pid).values()) - self.server0

    def report(self, **more: Any) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "client_cpu_s": round(self.client_cpu, 3),
            "server_cpu_s": round(self.server_cpu, 3),
            **more,
        }


def spread(threads: int, n: int, one: Callable[[int], None]) -> None:
    """Call ``one(i)`` for i in range(n) on ``threads`` threads, each taking every
    ``threads``-th index; one thread runs inline."""

    def lane(start: int) -> None:
        for i in range(start, n, threads):
            one(i)

    if threads == 1:
        lane(0)
        return
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(lane, k) for k in range(threads)]:
            f.result()


def experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def log_runs(
    client: MlflowClient,
    exp: str,
    values: list[tuple[dict, dict]],
    threads: int,
    errors: Errors,
    ids: list[str | None],
    *,
    end: bool = True,
) -> None:
    """create_run + one log_batch(params + metrics at step 0) + set_terminated per run;
    without ``end``, the runs stay RUNNING (two requests a run instead of three)."""

    def one(i: int) -> None:
        params, metrics = values[i]
        try:
            run = client.create_run(exp, run_name=f"r{i}")
            ts = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            if end:
                client.set_terminated(run.info.run_id)
            ids[i] = run.info.run_id
        except Exception as exc:  # counted and reported, never retried
            errors.add(f"run {i}", exc)

    spread(threads, len(values), one)


def bench_runs(client: MlflowClient, cfg: dict[str, Any], threads: int, n: int) -> dict[str, Any]:
    exp = experiment(client, f"runs-r{cfg['round']}-t{threads}")
    rng = random.Random(cfg["seed"] + cfg["round"])
    values = [run_values(rng, cfg["params"], cfg["metrics"]) for _ in range(n)]
    warm = experiment(client, f"warmup-r{cfg['round']}-t{threads}")
    log_runs(client, warm, values[: cfg["warmup"]], threads, Errors(), [None] * cfg["warmup"])
    errors, ids = Errors(), [None] * n
    with Meter(cfg["server_pid"]) as m:
        log_runs(client, exp, values, threads, errors, ids)
    # Check one stored run: all of its values, and it ended.
    check = next((r for r in ids if r), None)
    stored: dict[str, Any] = {}
    if check:
        run = client.get_run(check)
        stored = {
            "params": len(run.data.params),
            "metrics": len(run.data.metrics),
            "status": run.info.status,
        }
    return m.report(
        runs=n,
        threads=threads,
        runs_per_s=n / m.seconds,
        errors=errors.count,
        error_samples=errors.first,
        stored=stored,
    )


def bench_steps(client: MlflowClient, cfg: dict[str, Any]) -> dict[str, Any]:
    """One run; ``steps`` values of one metric sent with log_batch, ``batch`` per call."""
    exp = experiment(client, f"steps-r{cfg['round']}")
    warm = client.create_run(exp, run_name="warmup")
    client.log_batch(warm.info.run_id, metrics=[Metric("loss", 0.5, 0, i) for i in range(10)])
    run = client.create_run(exp, run_name="steps")
    rng = random.Random(cfg["seed"])
    values = [rng.random() for _ in range(cfg["steps"])]
    errors = Errors()
    with Meter(cfg["server_pid"]) as m:
        for start in range(0, len(values), cfg["batch"]):
            ts = int(time.time() * 1000)
            chunk = values[start : start + cfg["batch"]]
            try:
                client.log_batch(
                    run.info.run_id,
                    metrics=[Metric("loss", v, ts, start + k) for k, v in enumerate(chunk)],
                )
            except Exception as exc:
                errors.add(f"log_batch at step {start}", exc)
        client.set_terminated(run.info.run_id)
    history = client.get_metric_history(run.info.run_id, "loss")
    return m.report(
        steps=cfg["steps"],
        batch=cfg["batch"],
        steps_per_s=cfg["steps"] / m.seconds,
        errors=errors.count,
        error_samples=errors.first,
        stored=len(history),
        stored_steps_ok=sorted(h.step for h in history) == list(range(cfg["steps"])),
    )


def bench_single(client: MlflowClient, cfg: dict[str, Any]) -> dict[str, Any]:
    """One run; ``single`` values of one metric, one log_metric call (one request) each."""
    exp = experiment(client, f"steps-r{cfg['round']}")
    run = client.create_run(exp, run_name="single")
    for i in range(10):
        client.log_metric(run.info.run_id, "warm", 0.5, step=i)
    rng = random.Random(cfg["seed"])
    values = [rng.random() for _ in range(cfg["single"])]
    errors = Errors()
    with Meter(cfg["server_pid"]) as m:
        for step, value in enumerate(values):
            try:
                client.log_metric(run.info.run_id, "loss", value, step=step)
            except Exception as exc:
                errors.add(f"log_metric at step {step}", exc)
    stored = len(client.get_metric_history(run.info.run_id, "loss"))
    client.set_terminated(run.info.run_id)
    return m.report(
        steps=cfg["single"],
        steps_per_s=cfg["single"] / m.seconds,
        ms_per_call=m.seconds / cfg["single"] * 1000,
        errors=errors.count,
        error_samples=errors.first,
        stored=stored,
    )


def search_values(cfg: dict[str, Any]) -> list[tuple[dict, dict]]:
    """The search runs' values, the same on both sides: metrics m0 and m1 and a param."""
    rng = random.Random(cfg["seed"])
    return [
        ({"p0": rng.choice(["adam", "sgd"])}, {"m0": rng.random(), "m1": rng.random()})
        for _ in range(cfg["search_runs"])
    ]


def populate(client: MlflowClient, cfg: dict[str, Any]) -> dict[str, Any]:
    """``search_runs`` runs in one experiment: create_run + one log_batch each, on the
    runs phase's threads; not ended, to fill the experiment sooner (search ignores status)."""
    exp = experiment(client, SEARCH_EXPERIMENT)
    errors = Errors()
    n = cfg["search_runs"]
    with Meter(cfg["server_pid"]) as m:
        log_runs(client, exp, search_values(cfg), cfg["threads"], errors, [None] * n, end=False)
    return m.report(
        runs=n,
        threads=cfg["threads"],
        runs_per_s=n / m.seconds,
        errors=errors.count,
        error_samples=errors.first,
    )


def expected_top(cfg: dict[str, Any]) -> list[float]:
    """What the search must answer, computed from the values the runs were given."""
    m1 = sorted((m["m1"] for _, m in search_values(cfg) if m["m0"] > 0.5), reverse=True)
    return m1[: cfg["max_results"]]


def bench_search(client: MlflowClient, cfg: dict[str, Any]) -> dict[str, Any]:
    exp = experiment(client, SEARCH_EXPERIMENT)

    def search() -> list[Any]:
        return client.search_runs(
            [exp], cfg["filter"], order_by=[cfg["order_by"]], max_results=cfg["max_results"]
        )

    for _ in range(2):  # warm-up
        search()
    times = []
    with Meter(cfg["server_pid"]) as m:
        for _ in range(cfg["repeats"]):
            t = time.perf_counter()
            runs = search()
            times.append(time.perf_counter() - t)
    got = [r.data.metrics.get("m1") for r in runs]
    return m.report(
        search_runs=cfg["search_runs"],
        repeats=cfg["repeats"],
        times_ms=[x * 1000 for x in times],
        median_ms=statistics.median(times) * 1000,
        best_ms=min(times) * 1000,
        found=len(runs),
        top=got[:3],
        correct=got == expected_top(cfg),
        all_match_filter=all(r.data.metrics.get("m0", 0) > 0.5 for r in runs),
    )


def main() -> None:
    cfg = json.loads(sys.argv[1])
    client = MlflowClient(tracking_uri=cfg["uri"])
    out: dict[str, Any] = {}
    for part in cfg["parts"]:
        t = time.perf_counter()
        if part == "populate":
            out[part] = populate(client, cfg)
        elif part == "runs":
            out[part] = bench_runs(client, cfg, cfg["threads"], cfg["runs"])
        elif part == "runs_1thread":
            out[part] = bench_runs(client, cfg, 1, cfg["runs_1thread"])
        elif part == "steps":
            out[part] = bench_steps(client, cfg)
        elif part == "single":
            out[part] = bench_single(client, cfg)
        elif part == "search":
            out[part] = bench_search(client, cfg)
        print(f"  {cfg['side']} {part}: {time.perf_counter() - t:.1f}s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
