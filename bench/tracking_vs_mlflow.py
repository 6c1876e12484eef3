"""Tracking throughput and search latency: modelyard against MLflow, both on SQLite.

    bash bench/setup_mlflow.sh      # once: MLflow in its own venv, bench/.venv-mlflow
    .venv/bin/python bench/tracking_vs_mlflow.py [--runs 1000] [--steps 10000] [--search-runs 10000]

The modelyard side runs in this interpreter; the MLflow side runs in bench/.venv-mlflow
through bench/_mlflow_worker.py, which prints its timings as JSON. Each side gets fresh
temporary folders. Prints a table and writes bench/out/tracking.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import modelyard
from _common import machine

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
FILTER = "metrics.m0 > 0.5"
ORDER_BY = "metrics.m1 DESC"
ORDER_KEY = "m1"
TARGET_RATIO = 10.0
TARGET_SEARCH_MS = 50.0


def run_values(rng: random.Random, n_params: int, n_metrics: int) -> tuple[dict, dict]:
    """The same generator as the worker's, so both sides store the same values."""
    params = {
        f"p{j}": rng.choice(["0.1", "0.01", "adam", "sgd", "64", "128"]) for j in range(n_params)
    }
    metrics = {f"m{j}": rng.random() for j in range(n_metrics)}
    return params, metrics


def workspace(folder: Path) -> modelyard.Workspace:
    # environ={}: MODELYARD_* in the caller's shell must not move the store elsewhere.
    ws = modelyard.Workspace.init(folder, environ={})
    ws.metadata  # open and migrate now, outside the timed region  # noqa: B018
    return ws


def log_runs(ws: modelyard.Workspace, values: list[tuple[dict, dict]], experiment: str) -> None:
    for i, (params, metrics) in enumerate(values):
        with ws.start_run(f"r{i}", params=params, experiment=experiment) as run:
            run.log_metrics(metrics, step=0)


def bench_runs(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    ws = workspace(folder / "runs")
    rng = random.Random(args.seed)
    log_runs(ws, [run_values(rng, args.params, args.metrics) for _ in range(args.warmup)], "w")
    rng = random.Random(args.seed)
    values = [run_values(rng, args.params, args.metrics) for _ in range(args.runs)]
    t0 = time.perf_counter()
    log_runs(ws, values, "bench")
    elapsed = time.perf_counter() - t0
    ws.close()
    return {"runs": args.runs, "seconds": elapsed, "runs_per_s": args.runs / elapsed}


def bench_steps(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One run, one metric, one ``log_metrics`` call per step; the run buffers and
    writes ``FLUSH_ROWS`` at a time, which is modelyard's batching."""
    ws = workspace(folder / "steps")
    with ws.start_run("warmup") as run:
        for i in range(10):
            run.log_metrics({"loss": 0.5}, step=i)
    rng = random.Random(args.seed)
    values = [rng.random() for _ in range(args.steps)]
    run = ws.start_run("steps")
    t0 = time.perf_counter()
    for step, value in enumerate(values):
        run.log_metrics({"loss": value}, step=step)
    run.end()
    elapsed = time.perf_counter() - t0
    stored = len(ws.runs.history(run.run_id, "loss"))
    ws.close()
    return {
        "steps": args.steps,
        "seconds": elapsed,
        "steps_per_s": args.steps / elapsed,
        "stored": stored,
    }


def bench_search(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    ws = workspace(folder / "search")
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    for i in range(args.search_runs):
        params, metrics = run_values(rng, args.params, args.metrics)
        with ws.start_run(f"r{i}", params=params, tags={"bench": "search"}) as run:
            run.log_metrics(metrics, step=0)
    populate = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        found = ws.runs.search(FILTER, order_by=ORDER_BY, max_results=args.max_results)
        times.append(time.perf_counter() - t)
    ws.close()
    return {
        "search_runs": args.search_runs,
        "populate_seconds": populate,
        "times_ms": [x * 1000 for x in times],
        "median_ms": statistics.median(times) * 1000,
        "found": len(found),
        "top": [r.metrics.get(ORDER_KEY) for r in found[:3]],
    }


def run_mlflow(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    parts = ["runs_fluent", "runs_batch", "steps"]
    if args.mlflow_search:
        parts.append("search")
    cfg = {
        "folder": str(folder),
        "parts": parts,
        "seed": args.seed,
        "warmup": args.warmup,
        "runs": args.runs,
        "params": args.params,
        "metrics": args.metrics,
        "steps": args.steps,
        "batch": args.batch,
        "search_runs": args.search_runs,
        "repeats": args.repeats,
        "filter": FILTER,
        "order_by": ORDER_BY,
        "order_key": ORDER_KEY,
        "max_results": args.max_results,
    }
    proc = subprocess.run(
        [str(args.mlflow_python), str(BENCH / "_mlflow_worker.py"), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        cwd=folder if args.outside_git else REPO,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows(my: dict[str, Any], ml: dict[str, Any]) -> list[dict[str, Any]]:
    fluent, batch = ml["runs_fluent"]["runs_per_s"], ml["runs_batch"]["runs_per_s"]
    best_runs, how = (batch, "client log_batch") if batch >= fluent else (fluent, "fluent")
    out = [
        {
            "metric": f"runs/s ({my['runs']['runs']} runs, 10 params + 20 metrics)",
            "modelyard": my["runs"]["runs_per_s"],
            "mlflow": best_runs,
            "mlflow_api": how,
            "target": f">= {TARGET_RATIO:g}x",
        },
        {
            "metric": f"metric steps/s ({my['steps']['steps']} steps, 1 metric)",
            "modelyard": my["steps"]["steps_per_s"],
            "mlflow": ml["steps"]["steps_per_s"],
            "mlflow_api": f"client log_batch, {ml['steps']['batch']} steps/call",
            "target": f">= {TARGET_RATIO:g}x",
        },
    ]
    for row in out:
        row["ratio"] = row["modelyard"] / row["mlflow"]
        row["met"] = row["ratio"] >= TARGET_RATIO
    s_ml = ml.get("search")
    out.append(
        {
            "metric": f"search ms, median ({my['search']['search_runs']} runs)",
            "modelyard": my["search"]["median_ms"],
            "mlflow": s_ml["median_ms"] if s_ml else None,
            "mlflow_api": "client search_runs" if s_ml else "not run",
            "ratio": s_ml["median_ms"] / my["search"]["median_ms"] if s_ml else None,
            "target": f"< {TARGET_SEARCH_MS:g} ms",
            "met": my["search"]["median_ms"] < TARGET_SEARCH_MS,
        }
    )
    return out


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def table(result_rows: list[dict[str, Any]]) -> str:
    lines = [
        "| metric | modelyard | MLflow | ratio | target | met? |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in result_rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        lines.append(
            f"| {r['metric']} | {fmt(r['modelyard'])} | {fmt(r['mlflow'])} ({r['mlflow_api']}) "
            f"| {ratio} | {r['target']} | {'yes' if r['met'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--search-runs", type=int, default=10_000)
    p.add_argument("--params", type=int, default=10)
    p.add_argument("--metrics", type=int, default=20)
    p.add_argument("--batch", type=int, default=1000, help="MLflow steps per log_batch call")
    p.add_argument("--repeats", type=int, default=7, help="search repetitions (median)")
    p.add_argument("--max-results", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-mlflow-search", dest="mlflow_search", action="store_false")
    p.add_argument(
        "--outside-git",
        action="store_true",
        help="start both sides in temporary folders outside any git work tree, so that "
        "neither records a commit (like for like); by default both start in this checkout, "
        "where modelyard records the commit and a fresh dirty flag for every run",
    )
    p.add_argument("--mlflow-python", type=Path, default=BENCH / ".venv-mlflow/bin/python")
    p.add_argument("--out", type=Path, default=BENCH / "out/tracking.json")
    args = p.parse_args(argv)
    if not args.mlflow_python.exists():
        print(f"{args.mlflow_python} not found; run 'bash bench/setup_mlflow.sh'", file=sys.stderr)
        return 2

    # The machine may be shared; the 1-minute load average beside each side shows it.
    load = {"modelyard_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-modelyard-") as my_dir:
        os.chdir(my_dir if args.outside_git else REPO)
        my: dict[str, Any] = {}
        for name, fn in (("runs", bench_runs), ("steps", bench_steps), ("search", bench_search)):
            t = time.perf_counter()
            my[name] = fn(Path(my_dir), args)
            print(f"modelyard {name}: {time.perf_counter() - t:.1f}s", file=sys.stderr)
        os.chdir(REPO)
    load["mlflow_start"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as ml_dir:
        ml = run_mlflow(Path(ml_dir), args)
    load["mlflow_end"] = os.getloadavg()[0]

    result_rows = rows(my, ml)
    if "search" in ml and ml["search"]["top"] != my["search"]["top"]:
        print(f"warning: search tops differ: {my['search']['top']} vs {ml['search']['top']}")
    report = {
        "command": " ".join([".venv/bin/python", "bench/tracking_vs_mlflow.py", *sys.argv[1:]]),
        "machine": {**machine(mlflow=ml["mlflow_version"]), "loadavg_1m": load},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "filter": FILTER,
        "order_by": ORDER_BY,
        "modelyard": my,
        "mlflow": ml,
        "rows": result_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["machine"]))
    print(table(result_rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
