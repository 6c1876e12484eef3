"""What the prediction log costs a request: serving p50 with and without it.

The same model and requests as ``serving_latency.py`` (a LogisticRegression on 20
features, single-row JSON, one keep-alive connection, concurrency 1) against two real
``modelyard serve`` processes: one logging every prediction (the default: the record
is written before the answer leaves), one with ``--no-log-predictions``. Rounds
alternate between the two so that a slow spell of the machine hits both alike; the
result is the median over rounds of each side's p50, and their difference.

    .venv/bin/python bench/prediction_log.py [--rounds 5] [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serving_latency import build_workspace, free_port, wait_ready  # noqa: E402


def start(folder: Path, log: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    exe = Path(sys.executable).with_name("modelyard")
    flag = "--log-predictions" if log else "--no-log-predictions"
    cmd = [str(exe), "serve", "lr20@production", "--port", str(port), "-w", str(folder), flag]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc, port


def round_trip(port: int, bodies: list[bytes], warmup: int, requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"content-type": "application/json"}
    latencies = []
    for i in range(warmup + requests):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/models/lr20/predict", bodies[i % len(bodies)], headers)
        resp = conn.getresponse()
        payload = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {payload[:200]!r}")
        if i >= warmup:
            latencies.append(elapsed * 1000)
    conn.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ws"
        bodies = [json.dumps(r).encode() for r in build_workspace(folder)]
        servers = {"logged": start(folder, True), "not logged": start(folder, False)}
        p50: dict[str, list[float]] = {name: [] for name in servers}
        p99: dict[str, list[float]] = {name: [] for name in servers}
        try:
            for _ in range(args.rounds):
                for name, (_, port) in servers.items():
                    arr = np.array(round_trip(port, bodies, args.warmup, args.requests))
                    p50[name].append(float(np.percentile(arr, 50)))
                    p99[name].append(float(np.percentile(arr, 99)))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
        logged = sum(1 for _ in (folder / ".modelyard" / "predictions").rglob("seg-*"))
    result = {
        "rounds": args.rounds,
        "requests_per_round": args.requests,
        **{f"p50_ms {k}": round(statistics.median(v), 3) for k, v in p50.items()},
        **{f"p99_ms {k}": round(statistics.median(v), 3) for k, v in p99.items()},
        "p50 added by the log, ms": round(
            statistics.median(p50["logged"]) - statistics.median(p50["not logged"]), 3
        ),
        "segments written": logged,
    }
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / "prediction-log.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
