"""Serving regression check: this tree against an earlier commit, same model, same machine.

Issue 21 moved work onto the request path (non-finite checks, bounded metric labels,
readiness checks, a log writer that can fail fast); its bar is that the serving bench's
c=1 and c=32 numbers do not fall by more than 5%. This script serves the LogisticRegression
on 20 features of ``serving_latency.py`` from two source trees at once: the working tree
and ``--base`` (checked out by ``git worktree`` into a temporary folder). Each side builds
its own workspace with its own code, then the rounds alternate between the two servers:

- c=1: one keep-alive connection, ``--requests`` after 200 warm-up; p50 and p99.
- c=32: wrk for ``--seconds`` per round when installed (else the asyncio generator of
  ``_load.py``); requests/s.

Medians and best of ``--rounds`` rounds and the load average are printed and written to
``bench/out/serving-regression.json``. ``--flags`` passes the same ``modelyard serve`` flags
to both sides (``--flags "--max-batch-size 1"`` compares unbatched servers even where the
two trees' defaults differ).

    .venv/bin/python bench/serving_regression.py [--base 7df4d4b] [--rounds 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine
from _load import concurrent, sequential, wrk, wrk_available
from _procs import free_port, running

REPO = Path(__file__).resolve().parent.parent
PATH = "/v1/models/lr20/predict"
BUILD = (
    "import json, sys; sys.path.insert(0, {bench!r}); "
    "from serving_latency import build_workspace; "
    "print(json.dumps(build_workspace(__import__('pathlib').Path({folder!r}))))"
)


def side_env(src: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    return {**clean, "PYTHONPATH": str(src)}


def build(src: Path, folder: Path) -> list[dict[str, float]]:
    code = BUILD.format(bench=str(REPO / "bench"), folder=str(folder))
    out = subprocess.run(
        [sys.executable, "-c", code], env=side_env(src), capture_output=True, text=True, check=True
    )
    rows: list[dict[str, float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows


def throughput(port: int, bodies: list[bytes], seconds: float) -> float:
    if wrk_available():
        return float(wrk(port, PATH, bodies, 32, seconds)["rps"])
    result = concurrent(port, PATH, bodies, 32, seconds)
    return len(result.latencies) / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="7df4d4b", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--flags",
        default="",
        help="extra 'modelyard serve' flags for both sides, e.g. '--max-batch-size 1' to keep "
        "batching off whatever each tree's default",
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine(), "base": args.base, "flags": args.flags}
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        base_tree = tmp / "base-tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), args.base],
            check=True,
            capture_output=True,
        )
        stack.callback(
            subprocess.run,
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
            check=False,
            capture_output=True,
        )
        sources = {"base": base_tree / "src", "head": REPO / "src"}
        ports: dict[str, int] = {}
        bodies: list[bytes] = []
        for name, src in sources.items():
            rows = build(src, tmp / name)
            bodies = [json.dumps(r).encode() for r in rows]
            ports[name] = free_port()
            cmd = [sys.executable, "-m", "modelyard", "serve", "lr20@production"]
            cmd += ["--port", str(ports[name]), "-w", str(tmp / name), *args.flags.split()]
            log = tmp / f"{name}.log"
            stack.enter_context(running(cmd, ports[name], "/readyz", log, env=side_env(src)))
        result["load_before"] = os.getloadavg()
        p50: dict[str, list[float]] = {k: [] for k in sources}
        p99: dict[str, list[float]] = {k: [] for k in sources}
        rps: dict[str, list[float]] = {k: [] for k in sources}
        for i in range(args.rounds):
            # Alternate which side goes first, so neither always meets a warmer machine.
            order = list(sources) if i % 2 == 0 else list(reversed(sources))
            for name in order:
                lat = np.array(sequential(ports[name], PATH, bodies, args.requests).latencies)
                p50[name].append(float(np.percentile(lat, 50)) * 1000)
                p99[name].append(float(np.percentile(lat, 99)) * 1000)
            for name in order:
                rps[name].append(throughput(ports[name], bodies, args.seconds))
        result["load_after"] = os.getloadavg()
    result["c1"] = {
        name: {
            "p50_ms median": round(statistics.median(p50[name]), 3),
            "p50_ms best": round(min(p50[name]), 3),
            "p99_ms median": round(statistics.median(p99[name]), 3),
            "p99_ms best": round(min(p99[name]), 3),
        }
        for name in sources
    }
    result["c32"] = {
        "tool": "wrk" if wrk_available() else "asyncio (_load.concurrent)",
        **{f"{k} req/s median": round(statistics.median(v), 1) for k, v in rps.items()},
        **{f"{k} req/s best": round(max(v), 1) for k, v in rps.items()},
    }
    result["head / base"] = {
        "c1 p50 (lower is better)": round(
            statistics.median(p50["head"]) / statistics.median(p50["base"]), 3
        ),
        "c1 p99 (lower is better)": round(
            statistics.median(p99["head"]) / statistics.median(p99["base"]), 3
        ),
        "c32 req/s (higher is better)": round(
            statistics.median(rps["head"]) / statistics.median(rps["base"]), 3
        ),
    }
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / "serving-regression.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
