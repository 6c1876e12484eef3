"""What API keys cost a prediction: the same model served twice, with and without auth.

Two real ``modelyard serve`` processes on 127.0.0.1 serve the LogisticRegression of
``serving_latency.py``: one with ``--require-auth`` (every request carries a predictor
key in ``Authorization: Bearer``), one without. One client sends single-row requests
over one keep-alive connection at concurrency 1 to each in turn, for ``--rounds`` rounds
whose order alternates; the report gives each side's percentiles (median over rounds
and best) and the difference of the p50s, which is what auth adds (target: under
0.05 ms). Both servers log at warning, so the request log line does not blur it.

    .venv/bin/python bench/serving_auth.py [--requests 3000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import machine
from serving_latency import (
    build_workspace,
    free_port,
    measure,
    stop_servers,
    summarize,
    wait_ready,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per round")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests per round")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    sides = ("auth", "open")
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ws"
        rows = build_workspace(folder)
        bodies = [json.dumps(r).encode() for r in rows]
        import modelyard
        from modelyard.security import create_key

        with modelyard.Workspace(folder) as ws:
            _, key = create_key(ws.metadata, "predictor", name="bench")
        headers = {"auth": {"authorization": f"Bearer {key}"}, "open": {}}
        exe = Path(sys.executable).with_name("modelyard")
        env = {**os.environ, "MODELYARD_SERVE_LOG_LEVEL": "warning"}
        procs: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        try:
            for side in sides:
                port = free_port()
                cmd = [str(exe), "serve", "lr20@production", "--port", str(port), "-w", str(folder)]
                if side == "auth":
                    cmd.append("--require-auth")
                procs[side] = (port, subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL))
            for port, proc in procs.values():
                wait_ready(port, proc)
            load_start = os.getloadavg()[0]
            for r in range(args.rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    port = procs[side][0]
                    runs[side].append(
                        measure(port, bodies, args.requests, args.warmup, headers[side])
                    )
            load_end = os.getloadavg()[0]
        finally:
            stop_servers(procs)
    results: dict[str, Any] = {side: summarize(side, runs[side], args.requests) for side in sides}
    for stat in ("p50_ms", "p50_ms_best"):
        results[f"auth_adds_{stat}"] = round(results["auth"][stat] - results["open"][stat], 4)
    # Round by round (same round, adjacent in time): the fairest pairing on a busy machine.
    paired = sorted(
        a["p50_ms"] - o["p50_ms"] for a, o in zip(runs["auth"], runs["open"], strict=True)
    )
    results["auth_adds_p50_ms_paired_median"] = round(paired[len(paired) // 2], 4)
    combined = {
        "machine": machine(),
        "load_1min_start": round(load_start, 2),
        "load_1min_end": round(load_end, 2),
        **results,
    }
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / "serving-auth.json").write_text(json.dumps(combined, indent=2))
    print(json.dumps(combined, indent=2))


if __name__ == "__main__":
    main()
