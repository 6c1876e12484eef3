"""The quickstart model's container image: build time, size, start-up, and latency.

Trains and registers the quickstart model (``breast_cancer@production``) in a temporary
workspace, then:

- writes the build context once to warm the wheelhouse, and times a second write
  (warm wheelhouse) and a full ``modelyard build --image --no-cache`` (warm wheelhouse,
  no layer cache: every layer is built again);
- reports the image's size (as the engine counts it, and gzip-compressed as a registry
  would store its layers);
- times ``podman run`` to the first 200 on /readyz, and ``podman stop`` (SIGTERM);
- sends the same single-row request N times over one keep-alive connection to the
  container (through the published port) and to ``modelyard serve`` run outside it,
  alternating rounds, and compares the p50s.

No container registry is reachable here, so the base image is made locally, as the test
does (as root):

    debootstrap --variant=minbase --include=python3,python3-venv bookworm ROOTFS
    tar -C ROOTFS -c . | podman import - localhost/debian-py:bookworm
    CONTAINERS_CONF=podman.conf .venv/bin/python bench/image.py [--write]

where podman.conf sets ``runtime = "runc"`` ([engine]) and ``default_ulimits`` ([containers]).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from _common import REPO, machine, write_section
from _procs import HEADERS, free_port, running
from modelyard import Workspace
from modelyard.cli.quickstart import MODEL_NAME, train_and_register
from modelyard.release import Engine, build_image, detect_engine, write_context

REF = f"{MODEL_NAME}@production"
PATH = f"/v1/models/{MODEL_NAME}/predict"


def run(*command: str) -> str:
    proc = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"nothing ready on port {port} after {timeout} s")


def size_mb(engine: Engine, image: str) -> float:
    return int(run(engine.path, "image", "inspect", "--format", "{{.Size}}", image)) / 1e6


def compressed_mb(engine: Engine, tag: str) -> float:
    """Bytes of ``ENGINE save`` after gzip (level 6), in MB: about what a registry stores."""
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    total = 0
    with subprocess.Popen([engine.path, "save", tag], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            total += len(gz.compress(chunk))
    return (total + len(gz.flush())) / 1e6


def start_container(engine: Engine, tag: str, port: int) -> tuple[str, float]:
    """Run ``tag`` with ``port`` published; (container id, seconds to a 200 on /readyz)."""
    t0 = time.perf_counter()
    cid = run(engine.path, "run", "--detach", "--publish", f"127.0.0.1:{port}:8000", tag)
    wait_ready(port)
    return cid, time.perf_counter() - t0


def stop_container(engine: Engine, cid: str) -> float:
    t0 = time.perf_counter()
    run(engine.path, "stop", "--time", "10", cid)
    elapsed = time.perf_counter() - t0
    run(engine.path, "rm", cid)
    return elapsed


def latencies(port: int, body: bytes, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("POST", PATH, body, HEADERS)
        resp = conn.getresponse()
        payload = resp.read()
        out.append((time.perf_counter() - t0) * 1000)
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {payload[:200]!r}")
    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-image", default="localhost/debian-py:bookworm")
    parser.add_argument("--wheelhouse", type=Path, default=None, help="wheel cache folder")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=3, help="container starts to time")
    parser.add_argument("--write", action="store_true", help="write the section in RESULTS.md")
    args = parser.parse_args()
    engine = detect_engine()
    tag = "localhost/modelyard-bench-quickstart:1"
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-image-") as tmp:
        folder = Path(tmp) / "ws"
        ws = Workspace.init(folder, environ={})
        example = train_and_register(ws)["example"]
        body = json.dumps(example).encode()
        options = {"base_image": args.base_image, "wheelhouse": args.wheelhouse, "force": True}
        write_context(ws, REF, Path(tmp) / "warm-up", **options)  # fills the wheelhouse
        t0 = time.perf_counter()
        context = write_context(ws, REF, Path(tmp) / "context", **options)
        results["context_s"] = time.perf_counter() - t0
        before = set(run(engine.path, "images", "-q", "--filter", "dangling=true").split())
        try:
            t0 = time.perf_counter()
            build_image(ws, REF, Path(tmp) / "image", tag=tag, no_cache=True, **options)
            results["build_s"] = time.perf_counter() - t0
            results["size_mb"] = size_mb(engine, tag)
            results["gzip_mb"] = compressed_mb(engine, tag)
            results["base_mb"] = size_mb(engine, args.base_image)
            starts, stops = [], []
            for _ in range(args.starts):
                cid, started = start_container(engine, tag, free_port())
                starts.append(started)
                stops.append(stop_container(engine, cid))
            results["ready_s"] = statistics.median(starts)
            results["stop_s"] = statistics.median(stops)
            results.update(compare(engine, tag, folder, body, args))
        finally:
            run(engine.path, "rmi", "--force", tag)
            after = set(run(engine.path, "images", "-q", "--filter", "dangling=true").split())
            for image in after - before:
                run(engine.path, "rmi", "--force", image)
        ws.close()
    text = section(results, args, engine, context.wheels)
    print(text)
    if args.write:
        write_section(REPO / "bench" / "RESULTS.md", "## Container image (issue 12)", text)


def compare(
    engine: Engine, tag: str, folder: Path, body: bytes, args: argparse.Namespace
) -> dict[str, float]:
    """p50 / p99 of the same request to the container and to the server outside it."""
    inside_port, outside_port = free_port(), free_port()
    cid, _ = start_container(engine, tag, inside_port)
    exe = Path(sys.executable).with_name("modelyard")
    command = [str(exe), "serve", REF, "--port", str(outside_port), "-w", str(folder)]
    log = folder.parent / "outside.log"
    samples: dict[str, list[float]] = {"inside": [], "outside": []}
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        with running(command, outside_port, "/readyz", log, env=env):
            for port in (inside_port, outside_port):
                latencies(port, body, 200)  # warm-up
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                samples["inside"] += latencies(inside_port, body, per_round)
                samples["outside"] += latencies(outside_port, body, per_round)
    finally:
        stop_container(engine, cid)
    out: dict[str, float] = {}
    for side, values in samples.items():
        out[f"{side}_p50"] = float(np.percentile(values, 50))
        out[f"{side}_p99"] = float(np.percentile(values, 99))
        out[f"{side}_n"] = len(values)
    return out


def section(
    r: dict[str, float], args: argparse.Namespace, engine: Engine, wheels: tuple[str, ...]
) -> str:
    info = machine()
    sklearn = next(w for w in wheels if w.startswith("scikit-learn=="))
    build = f"{r['build_s']:.1f} s"
    stop = f"{r['stop_s']:.2f} s"
    inside = f"{r['inside_p50']:.3f} | {r['inside_p99']:.3f}"
    met = r["size_mb"] < 500
    base = f"{r['base_mb']:.0f} MB"
    r_engine = run(engine.path, "--version")
    size_verdict = f"{'met' if met else 'not met'} ({r['size_mb']:.0f} MB uncompressed)"
    return f"""\
## Container image (issue 12)

```
CONTAINERS_CONF=podman.conf .venv/bin/python bench/image.py --base-image {args.base_image}
```

The quickstart model (`{REF}`, a scikit-learn `LogisticRegression` pipeline,
{sklearn}) built with `modelyard build {REF} -o DIR --image TAG --base-image
{args.base_image}` by {engine.name}. The base is Debian bookworm's minbase with `python3` and
`python3-venv` (Python 3.11), trimmed like the `-slim` images (no apt lists, docs, man
pages or locales): {r["base_mb"]:.0f} MB; no container registry is reachable from this machine, so
`python:3.11-slim` could not be used. Machine: {info["nproc"]} cores, {info["platform"]},
Python {info["python"]}; modelyard {info["modelyard_commit"]}, {r_engine} (runc).

| measure | value |
| --- | ---: |
| write the build context, warm wheelhouse ({len(wheels)} wheels) | {r["context_s"]:.1f} s |
| `modelyard build --image --no-cache`, warm wheelhouse (every layer again) | {build} |
| image size (`podman image inspect`, uncompressed) | {r["size_mb"]:.0f} MB |
| image size, gzip of `podman save` (about what a registry stores) | {r["gzip_mb"]:.0f} MB |
| `podman run` to the first 200 on /readyz (median of {args.starts}) | {r["ready_s"]:.2f} s |
| `podman stop` (SIGTERM: the server drains, exits; median of {args.starts}) | {stop} |

Latency of the same single-row request (`POST {PATH}`, one keep-alive `http.client`
connection, concurrency 1, 200 warm-up requests each, then {args.rounds} alternating rounds;
{int(r["inside_n"])} timed requests per side):

| server | p50 ms | p99 ms |
| --- | ---: | ---: |
| in the container (published port 127.0.0.1 → 8000) | {inside} |
| `modelyard serve` outside it, same workspace | {r["outside_p50"]:.3f} | {r["outside_p99"]:.3f} |
| **added by the container** | **{r["inside_p50"] - r["outside_p50"]:.3f}** | |

Target: a scikit-learn model's image under 500 MB — {size_verdict}. The base is {base} and
the virtual environment the rest, after the build drops what serving never reads (the test
suites inside pandas, scipy, scikit-learn, numpy and pyarrow, C headers, Cython sources, pip).
Most of it is modelyard's own run-time dependencies, each imported by `modelyard serve`:
pyarrow (the prediction log's Parquet) about 160 MB, scipy (for scikit-learn) 110 MB, DuckDB
(imported with `modelyard.features`) 67 MB, numpy 56 MB, pandas 40 MB, scikit-learn 34 MB,
SQLAlchemy 29 MB, gRPC 27 MB; about 84 MB of it is bytecode, kept so that the server starts
without compiling. Under 500 MB needs serving without DuckDB and pyarrow (about 230 MB
together) and a little more: a change to the package's dependencies and to its prediction
log, not to the image builder.
"""


if __name__ == "__main__":
    main()
