"""Serving latency: a LogisticRegression on 20 features, single-row JSON, concurrency 1.

Starts a real ``modelyard serve`` process on 127.0.0.1, then one client on the same
machine sends N requests over one keep-alive connection (http.client: the thinnest
client the standard library has, so the client adds as little as possible) and
reports percentiles of the round-trip time as the client sees it.

    .venv/bin/python bench/serving_latency.py [--requests 2000] [--warmup 200] [--log-level info]
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

import numpy as np


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--log-level", default="info", help="server log level; info logs every request"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ws"
        rows = build_workspace(folder)
        bodies = [json.dumps(r).encode() for r in rows]
        port = free_port()
        exe = Path(sys.executable).with_name("modelyard")
        env = {**os.environ, "MODELYARD_SERVE_LOG_LEVEL": args.log_level}
        proc = subprocess.Popen(
            [str(exe), "serve", "lr20@production", "--port", str(port), "-w", str(folder)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port, proc)
            conn = http.client.HTTPConnection("127.0.0.1", port)
            headers = {"content-type": "application/json"}
            latencies: list[float] = []
            for i in range(args.warmup + args.requests):
                body = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                conn.request("POST", "/v1/models/lr20/predict", body, headers)
                resp = conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter() - t0
                if resp.status != 200:
                    raise SystemExit(f"HTTP {resp.status}: {payload[:200]!r}")
                if i >= args.warmup:
                    latencies.append(elapsed * 1000)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    arr = np.array(latencies)
    result = {
        "log_level": args.log_level,
        "requests": len(latencies),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p90_ms": round(float(np.percentile(arr, 90)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "throughput_rps": round(len(latencies) / (arr.sum() / 1000), 1),
    }
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / f"serving-{args.log_level}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
