"""The shared prediction log (issue 20): what shipping to S3 costs serving, how soon a row is
readable from another host, and how fast feedback finds its requests in a large log.

Three ``modelyard serve`` processes answer the same LogisticRegression on 20 features
(``serving_latency.py``), each from its own copy of one workspace: the log shipped to an
S3 server, the log in its local folder (the default), and no log. The S3 server is moto
in server mode, started by this script on a free port in its own process (a benchmark
never writes to a bucket it did not create).

- c=1: one keep-alive connection; rounds alternate between the three servers; p50/p99.
- c=32: wrk for ``--seconds`` per round when installed (else the asyncio generator of
  ``_load.py``), rounds alternating between the S3 and the local log; requests/s.
- delay: requests at c=1 with known ids against the S3 server while another "host"
  polls the store's request index every 0.25 s; the delay is first seen minus answered.
- feedback: a store holding ``--log-rows`` rows (shipped parts, as replicas write them);
  ``lookup`` of 1,000 ids as ``POST /v1/feedback`` does it, cold (a new server) and warm,
  on the local store and on S3; and the quality join of 1,000 labels for context.

    .venv/bin/python bench/prediction_store.py [--rounds 5] [--seconds 10] [--log-rows 1000000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402
from _load import HEADERS, concurrent, sequential, wrk, wrk_available  # noqa: E402
from serving_latency import build_workspace, free_port, wait_ready  # noqa: E402

PATH = "/v1/models/lr20/predict"
AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    deadline = time.monotonic() + 30
    while True:
        try:
            boto3.client("s3", endpoint_url=endpoint, **_creds()).create_bucket(Bucket="bench-log")
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_DEFAULT_REGION"],
    }


def serve(folder: Path, env: dict[str, str], *flags: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    exe = Path(sys.executable).with_name("modelyard")
    cmd = [str(exe), "serve", "lr20@production", "--port", str(port), "-w", str(folder), *flags]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env={**clean, **AWS, **env})
    wait_ready(port, proc)
    return proc, port


def throughput(port: int, bodies: list[bytes], seconds: float) -> float:
    if wrk_available():
        return float(wrk(port, PATH, bodies, 32, seconds)["rps"])
    result = concurrent(port, PATH, bodies, 32, seconds)
    return len(result.latencies) / result.seconds


def ship_delays(port: int, bodies: list[bytes], store: Any, seconds: float) -> list[float]:
    """Seconds from each answer to its request id in the store's index (another host)."""
    answered: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    read = set(store.keys("index/"))  # earlier runs' parts: not this measurement's

    def poll() -> None:
        while not done.is_set() or len(seen) < len(answered):
            keys = [k for k in store.keys("index/") if k not in read]
            for key, table in store.read(keys, ["request_id"]).items():
                now = time.time()
                for rid in table["request_id"].to_pylist():
                    seen.setdefault(rid, now)
                read.add(key)
            if done.is_set() and time.time() - stop > 60:
                return  # some never arrived: reported as missing
            time.sleep(0.25)

    stop = float("inf")
    poller = threading.Thread(target=poll)
    poller.start()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        rid = f"delay-{i}"
        conn.request("POST", PATH, bodies[i % len(bodies)], {**HEADERS, "x-request-id": rid})
        conn.getresponse().read()
        answered[rid] = time.time()
        i += 1
        time.sleep(0.005)
    conn.close()
    stop = time.time()
    done.set()
    poller.join()
    return [seen[r] - t for r, t in answered.items() if r in seen] + [
        float("inf") for r in answered if r not in seen
    ]


def fill_log(store: Any, rows: int, per_part: int = 10_000) -> list[str]:
    """``rows`` single-row requests in parts of ``per_part``, as shipping writes them."""
    from modelyard.backends.predictions._layout import prediction_parts

    ids = []
    now = time.time_ns() // 1000
    for part in range(rows // per_part):
        records = []
        for j in range(per_part):
            rid = f"{part:05d}-{j:06d}-{random.getrandbits(48):012x}"
            ids.append(rid)
            records.append(
                {
                    "request_id": rid,
                    "row": 0,
                    "ts": now,
                    "model": "lr20",
                    "version": 1,
                    "variant": "production",
                    "latency_ms": 0.5,
                    "status": 200,
                    "inputs": {f"f{k}": 0.1 * k for k in range(20)},
                    "outputs": {"prediction": j % 2},
                }
            )
        for key, table in prediction_parts(records, f"seg-{now * 1000 + part}-1-bench").items():
            store.put(key, table)
    return ids


def feedback(store_url: str, options: dict[str, Any], rows: int, spool: Path) -> dict[str, Any]:
    from modelyard.backends.predictions import open_prediction_log
    from modelyard.monitoring._quality import joined

    log = open_prediction_log(store_url, spool=spool, storage_options=options)
    t0 = time.perf_counter()
    ids = fill_log(log.store, rows)
    filled = time.perf_counter() - t0
    wanted = random.Random(7).sample(ids, 1000)
    out: dict[str, Any] = {"rows": rows, "fill_s": round(filled, 1)}
    cold = open_prediction_log(store_url, spool=spool, storage_options=options)
    t0 = time.perf_counter()
    found = cold.lookup(wanted)
    out["lookup 1000 ids cold_s"] = round(time.perf_counter() - t0, 3)
    assert len(found) == 1000, len(found)
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        cold.lookup(random.Random(len(warm)).sample(ids, 1000))
        warm.append(time.perf_counter() - t0)
    out["lookup 1000 ids warm_s (median of 5)"] = round(statistics.median(warm), 4)
    import pandas as pd

    labels = pd.DataFrame({"request_id": wanted, "row": 0, "label": 1})
    t0 = time.perf_counter()
    frame = joined(cold, "lr20", labels)
    out["quality join of 1000 labels_s (reads every row)"] = round(time.perf_counter() - t0, 2)
    assert len(frame) == 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--delay-seconds", type=float, default=60.0)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    moto, endpoint = start_moto()
    s3_env = {
        "MODELYARD_PREDICTIONS_URL": "s3://bench-log/predictions",
        "MODELYARD_PREDICTIONS_ENDPOINT_URL": endpoint,
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "base"
            bodies = [json.dumps(r).encode() for r in build_workspace(base)]
            folders = {name: Path(tmp) / name for name in ("s3", "local", "off")}
            for folder in folders.values():
                shutil.copytree(base, folder)
            servers = {
                "s3": serve(folders["s3"], s3_env),
                "local": serve(folders["local"], {}),
                "off": serve(folders["off"], {}, "--no-log-predictions"),
            }
            try:
                p50: dict[str, list[float]] = {k: [] for k in servers}
                p99: dict[str, list[float]] = {k: [] for k in servers}
                rps: dict[str, list[float]] = {"s3": [], "local": []}
                for _ in range(args.rounds):
                    for name, (_, port) in servers.items():
                        lat = np.array(sequential(port, PATH, bodies, args.requests).latencies)
                        p50[name].append(float(np.percentile(lat, 50)) * 1000)
                        p99[name].append(float(np.percentile(lat, 99)) * 1000)
                    for name in ("s3", "local"):
                        rps[name].append(throughput(servers[name][1], bodies, args.seconds))
                result["c1"] = {
                    name: {
                        "p50_ms median": round(statistics.median(p50[name]), 3),
                        "p50_ms best": round(min(p50[name]), 3),
                        "p99_ms median": round(statistics.median(p99[name]), 3),
                    }
                    for name in servers
                }
                result["c1"]["p50 added by the S3 log, ms"] = round(
                    statistics.median(p50["s3"]) - statistics.median(p50["off"]), 3
                )
                result["c1"]["p50 added by the local log, ms"] = round(
                    statistics.median(p50["local"]) - statistics.median(p50["off"]), 3
                )
                result["c32"] = {
                    "tool": "wrk" if wrk_available() else "asyncio (_load.concurrent)",
                    **{f"{k} req/s median": round(statistics.median(v), 1) for k, v in rps.items()},
                    **{f"{k} req/s best": round(max(v), 1) for k, v in rps.items()},
                }
                result["c32"]["s3 / local"] = round(
                    statistics.median(rps["s3"]) / statistics.median(rps["local"]), 3
                )
                from modelyard.backends.predictions import open_parts

                store = open_parts(
                    "s3://bench-log/predictions", client_kwargs={"endpoint_url": endpoint}
                )
                os.environ.update(AWS)
                delays = np.array(ship_delays(servers["s3"][1], bodies, store, args.delay_seconds))
                finite = delays[np.isfinite(delays)]
                result["delay"] = {
                    "requests": int(len(delays)),
                    "missing": int((~np.isfinite(delays)).sum()),
                    "p50_s": round(float(np.percentile(finite, 50)), 2),
                    "p99_s": round(float(np.percentile(finite, 99)), 2),
                    "max_s": round(float(finite.max()), 2),
                    "max_delay_s setting": 10.0,
                }
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(timeout=60)
            result["feedback local"] = feedback(
                str(Path(tmp) / "fb"), {}, args.log_rows, Path(tmp) / "fb-spool"
            )
            result["feedback s3"] = feedback(
                "s3://bench-log/feedback",
                {"client_kwargs": {"endpoint_url": endpoint}},
                args.log_rows,
                Path(tmp) / "fb-spool-s3",
            )
    finally:
        moto.terminate()
        moto.wait(timeout=30)
    result["load_after"] = os.getloadavg()
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / "prediction-store.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
