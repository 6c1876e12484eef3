"""MLflow side of bench/tracking_vs_mlflow.py; runs under bench/.venv-mlflow/bin/python.

Reads one JSON object of settings from argv[1], prints one JSON object of timings to
stdout. It imports nothing from modelyard, so MLflow never enters the package's venv.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


def run_values(rng: random.Random, n_params: int, n_metrics: int) -> tuple[dict, dict]:
    params = {
        f"p{j}": rng.choice(["0.1", "0.01", "adam", "sgd", "64", "128"]) for j in range(n_params)
    }
    metrics = {f"m{j}": rng.random() for j in range(n_metrics)}
    return params, metrics


def fresh_uri(folder: Path, name: str) -> str:
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def bench_runs_fluent(folder: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """mlflow.start_run() + log_params(dict) + log_metrics(dict) per run."""
    mlflow.set_tracking_uri(fresh_uri(folder, "runs_fluent"))
    mlflow.set_experiment("warmup")
    rng = random.Random(cfg["seed"])
    for i in range(cfg["warmup"]):
        params, metrics = run_values(rng, cfg["params"], cfg["metrics"])
        with mlflow.start_run(run_name=f"w{i}"):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics, step=0)
    mlflow.set_experiment("bench")
    rng = random.Random(cfg["seed"])
    values = [run_values(rng, cfg["params"], cfg["metrics"]) for _ in range(cfg["runs"])]
    t0 = time.perf_counter()
    for i, (params, metrics) in enumerate(values):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics, step=0)
    elapsed = time.perf_counter() - t0
    return {"runs": cfg["runs"], "seconds": elapsed, "runs_per_s": cfg["runs"] / elapsed}


def bench_runs_batch(folder: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """MlflowClient: create_run + one log_batch(params + metrics) + set_terminated per run."""
    client = MlflowClient(tracking_uri=fresh_uri(folder, "runs_batch"))
    warm = client.create_experiment("warmup")
    exp = client.create_experiment("bench")
    rng = random.Random(cfg["seed"])

    def one(experiment_id: str, name: str, params: dict, metrics: dict) -> None:
        run = client.create_run(experiment_id, run_name=name)
        ts = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id)

    for i in range(cfg["warmup"]):
        one(warm, f"w{i}", *run_values(rng, cfg["params"], cfg["metrics"]))
    rng = random.Random(cfg["seed"])
    values = [run_values(rng, cfg["params"], cfg["metrics"]) for _ in range(cfg["runs"])]
    t0 = time.perf_counter()
    for i, (params, metrics) in enumerate(values):
        one(exp, f"r{i}", params, metrics)
    elapsed = time.perf_counter() - t0
    return {"runs": cfg["runs"], "seconds": elapsed, "runs_per_s": cfg["runs"] / elapsed}


def bench_steps(folder: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """One run; ``steps`` values of one metric sent with log_batch, ``batch`` per call."""
    client = MlflowClient(tracking_uri=fresh_uri(folder, "steps"))
    exp = client.create_experiment("bench")
    warm = client.create_run(exp, run_name="warmup")
    client.log_batch(warm.info.run_id, metrics=[Metric("loss", 0.5, 0, i) for i in range(10)])
    run = client.create_run(exp, run_name="steps")
    rng = random.Random(cfg["seed"])
    values = [rng.random() for _ in range(cfg["steps"])]
    t0 = time.perf_counter()
    for start in range(0, len(values), cfg["batch"]):
        ts = int(time.time() * 1000)
        chunk = values[start : start + cfg["batch"]]
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("loss", v, ts, start + k) for k, v in enumerate(chunk)],
        )
    client.set_terminated(run.info.run_id)
    elapsed = time.perf_counter() - t0
    stored = len(client.get_metric_history(run.info.run_id, "loss"))
    return {
        "steps": cfg["steps"],
        "batch": cfg["batch"],
        "seconds": elapsed,
        "steps_per_s": cfg["steps"] / elapsed,
        "stored": stored,
    }


def bench_search(folder: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Populate ``search_runs`` runs with log_batch, then time search_runs."""
    client = MlflowClient(tracking_uri=fresh_uri(folder, "search"))
    exp = client.create_experiment("bench")
    rng = random.Random(cfg["seed"])
    t0 = time.perf_counter()
    for i in range(cfg["search_runs"]):
        params, metrics = run_values(rng, cfg["params"], cfg["metrics"])
        run = client.create_run(exp, run_name=f"r{i}")
        ts = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("bench", "search")],
        )
        client.set_terminated(run.info.run_id)
    populate = time.perf_counter() - t0
    times = []
    found = 0
    for _ in range(cfg["repeats"]):
        t = time.perf_counter()
        runs = client.search_runs(
            [exp],
            filter_string=cfg["filter"],
            order_by=[cfg["order_by"]],
            max_results=cfg["max_results"],
        )
        times.append(time.perf_counter() - t)
        found = len(runs)
    top = [r.data.metrics.get(cfg["order_key"]) for r in runs[:3]]
    return {
        "search_runs": cfg["search_runs"],
        "populate_seconds": populate,
        "times_ms": [x * 1000 for x in times],
        "median_ms": statistics.median(times) * 1000,
        "found": found,
        "top": top,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    folder = Path(cfg["folder"])
    out: dict[str, Any] = {"mlflow_version": mlflow.__version__}
    for part in cfg["parts"]:
        t = time.perf_counter()
        out[part] = {
            "runs_fluent": bench_runs_fluent,
            "runs_batch": bench_runs_batch,
            "steps": bench_steps,
            "search": bench_search,
        }[part](folder, cfg)
        print(f"mlflow {part}: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
