"""Serving latency: a LogisticRegression on 20 features, single-row JSON, concurrency 1.

Starts one real ``modelyard serve`` process per ``--log-level`` on 127.0.0.1 (info logs a
line per request, warning does not), then one client on the same machine sends N requests
over one keep-alive connection (http.client: the thinnest client the standard library has,
so the client adds as little as possible) to each server in turn, for ``--rounds`` rounds
whose order rotates, and reports percentiles of the round-trip time as the client sees it:
the median over the rounds and the best, with the load average.

    .venv/bin/python bench/serving_latency.py [--requests 2000] [--rounds 5] [--log-level info]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_workspace(folder: Path) -> list[dict[str, float]]:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import modelyard

    x, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    names = [f"f{i}" for i in range(20)]
    import pandas as pd

    frame = pd.DataFrame(x, columns=names)
    ws = modelyard.Workspace.init(folder)
    with ws.start_run("bench") as run:
        model = LogisticRegression(max_iter=500).fit(frame, y)
        logged = ws.registry.log_model(run, model, input_example=frame.head(20))
    v = ws.registry.register("lr20", logged)
    ws.registry.set_alias("lr20", "production", v.version)
    ws.close()
    return [dict(zip(names, map(float, row), strict=True)) for row in x[:500]]


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not become ready")


def stop_servers(procs: dict[str, tuple[int, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM every server at once, then wait for each (they drain in parallel)."""
    for _, proc in procs.values():
        proc.terminate()
    for _, proc in procs.values():
        proc.wait(timeout=30)


def measure(
    port: int,
    bodies: list[bytes],
    requests: int,
    warmup: int,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """``warmup`` untimed then ``requests`` timed round trips on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"content-type": "application/json", **(extra_headers or {})}
    latencies: list[float] = []
    try:
        for i in range(warmup + requests):
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/v1/models/lr20/predict", body, headers)
            resp = conn.getresponse()
            payload = resp.read()
            elapsed = time.perf_counter() - t0
            if resp.status != 200:
                raise SystemExit(f"HTTP {resp.status}: {payload[:200]!r}")
            if i >= warmup:
                latencies.append(elapsed * 1000)
    finally:
        conn.close()
    arr = np.array(latencies)
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "mean_ms": statistics.fmean(latencies),
        "throughput_rps": len(latencies) / (arr.sum() / 1000),
        "load_1min": os.getloadavg()[0],
    }


def summarize(level: str, runs: list[dict[str, float]], requests: int) -> dict[str, Any]:
    """Medians over the rounds (the keys earlier versions wrote) and the best of each."""
    out: dict[str, Any] = {"log_level": level, "requests": requests, "rounds": len(runs)}
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"):
        values = [r[key] for r in runs]
        out[key] = round(statistics.median(values), 3)
        out[f"{key}_best"] = round(min(values), 3)
    rps = [r["throughput_rps"] for r in runs]
    out["throughput_rps"] = round(statistics.median(rps), 1)
    out["throughput_rps_best"] = round(max(rps), 1)
    out["load_1min"] = [round(r["load_1min"], 2) for r in runs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per round")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--log-level",
        nargs="+",
        default=["info", "warning"],
        help="server log levels, one server each; info logs every request",
    )
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {level: [] for level in args.log_level}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ws"
        rows = build_workspace(folder)
        bodies = [json.dumps(r).encode() for r in rows]
        exe = Path(sys.executable).with_name("modelyard")
        procs: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            for level in args.log_level:
                port = free_port()
                env = {**os.environ, "MODELYARD_SERVE_LOG_LEVEL": level}
                cmd = [str(exe), "serve", "lr20@production", "--port", str(port), "-w", str(folder)]
                procs[level] = (port, subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL))
            for port, proc in procs.values():
                wait_ready(port, proc)
            load_start = os.getloadavg()[0]
            for r in range(args.rounds):
                # Rotate which server goes first, so none always meets a warmer machine.
                k = r % len(args.log_level)
                for level in args.log_level[k:] + args.log_level[:k]:
                    port = procs[level][0]
                    runs[level].append(measure(port, bodies, args.requests, args.warmup))
            load_end = os.getloadavg()[0]
        finally:
            stop_servers(procs)
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    results = {}
    for level, level_runs in runs.items():
        results[level] = summarize(level, level_runs, args.requests)
        (out / f"serving-{level}.json").write_text(json.dumps(results[level], indent=2))
    combined = {
        "machine": machine(),
        "load_1min_start": round(load_start, 2),
        "load_1min_end": round(load_end, 2),
        "levels": results,
    }
    (out / "serving-latency.json").write_text(json.dumps(combined, indent=2))
    print(json.dumps(combined, indent=2))


if __name__ == "__main__":
    main()
