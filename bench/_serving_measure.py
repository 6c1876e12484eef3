"""One measurement of one side for bench/serving.py: c=1, c=32 (shared or pinned), hot swap.

Pinned means the load generator gets a core of its own: wrk runs under ``taskset -c LAST``
and every thread of the server's processes is moved to the other cores
(``sched_setaffinity``, what ``taskset -a -p`` does) for that run only, then moved back.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _load
from _common import percentiles
from _procs import Unavailable, tree, tree_cpu_seconds
from _serving_sides import FRIENDLY

ALL_CPUS = sorted(os.sched_getaffinity(0))


def cpu_split() -> tuple[list[int], list[int]] | None:
    """(server cores, load generator core) for a pinned run; None with a single core."""
    if len(ALL_CPUS) < 2:
        return None
    return ALL_CPUS[:-1], ALL_CPUS[-1:]


def _set_affinity(pid: int, cpus: list[int]) -> None:
    for p in tree(pid):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:  # a thread that ended meanwhile
                pass


@contextmanager
def pinned(pid: int, cpus: list[int]) -> Iterator[None]:
    _set_affinity(pid, cpus)
    try:
        yield
    finally:
        _set_affinity(pid, ALL_CPUS)


def c1(port: int, path: str, reqs: list[bytes], requests: int, warmup: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    res = _load.sequential(port, path, reqs, requests, warmup)
    if not res.latencies:
        raise Unavailable(
            f"every request to {path} failed: {dict(res.statuses)} {dict(res.errors)}"
        )
    return {
        **percentiles(res.latencies),
        "failures": res.failures,
        "load_1min": round(load, 2),
    }


def c32(
    pid: int,
    port: int,
    path: str,
    reqs: list[bytes],
    args: Any,
    pin: bool = False,
) -> dict[str, Any]:
    """A short wrk warm-up, then one timed wrk run on fresh connections."""
    split = cpu_split() if pin else None
    if pin and split is None:
        raise Unavailable("a pinned run needs at least 2 cores")
    load_args: dict[str, Any] = {"threads": args.wrk_threads, "stagger": args.stagger}
    if split is not None:
        load_args["cpus"] = split[1]
    with pinned(pid, split[0]) if split is not None else _nothing():
        if args.warmup_seconds > 0:
            _load.wrk(port, path, reqs[:100], args.concurrency, args.warmup_seconds, **load_args)
        load = os.getloadavg()[0]
        cpu0 = tree_cpu_seconds(pid)
        res = _load.wrk(port, path, reqs[:100], args.concurrency, args.seconds, **load_args)
        cpu1 = tree_cpu_seconds(pid)
    secs = res["seconds"]
    per = sorted((cpu1[p] - cpu0.get(p, 0.0) for p in cpu1), reverse=True)
    return {
        "ok_rps": round((res["requests"] - res["status"]) / secs, 1),
        "p50_ms": round(res["p50_us"] / 1000, 3),
        "p99_ms": round(res["p99_us"] / 1000, 3),
        "requests": res["requests"],
        "non_2xx": res["status"],
        "socket_errors": res["socket_errors"],
        "server_cores": round(sum(per) / secs, 2),
        "server_cores_by_process": [round(c / secs, 2) for c in per if c / secs >= 0.01],
        "wrk_cores": round(res["wrk_cpu_s"] / secs, 2),
        "load_1min": round(load, 2),
    }


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and best over the rounds that ran; failures summed."""
    done = [r for r in runs if "error" not in r]
    errors = [r["error"] for r in runs if "error" in r]
    out: dict[str, Any] = {"rounds": len(done), "errors": errors}
    if not done:
        return out
    for key in ("p50_ms", "p99_ms"):
        vals = [r[key] for r in done]
        out[f"{key}_median"] = round(statistics.median(vals), 3)
        out[f"{key}_best"] = round(min(vals), 3)
    if "ok_rps" in done[0]:
        vals = [r["ok_rps"] for r in done]
        out["ok_rps_median"] = round(statistics.median(vals), 1)
        out["ok_rps_best"] = round(max(vals), 1)
        out["ok_rps_rounds"] = vals
        for key in ("non_2xx", "socket_errors", "requests"):
            out[key] = sum(r[key] for r in done)
        for key in ("server_cores", "wrk_cores"):
            out[f"{key}_median"] = round(statistics.median(r[key] for r in done), 2)
        top = max(done, key=lambda r: r["ok_rps"])
        out["server_cores_by_process_best"] = top["server_cores_by_process"]
    else:
        out["failures"] = sum(r["failures"] for r in done)
    out["load_1min"] = [r["load_1min"] for r in done]
    return out


def hot_swap(port: int, workspace: Path, reqs: list[bytes], args: Any) -> dict[str, Any]:
    """Load at c=8 while the alias moves 1 -> 2 -> 1 ... every ``args.move_every`` seconds."""
    from modelyard.workspace import Workspace

    moves: list[tuple[float, int]] = []
    failed: list[str] = []

    def mover() -> None:
        ws = Workspace(workspace)
        try:
            time.sleep(1.0)
            for k in range(args.moves):
                version = 2 if k % 2 == 0 else 1
                ws.registry.set_alias("lr", "production", version)
                moves.append((time.perf_counter(), version))
                time.sleep(args.move_every)
        except Exception as exc:  # reported, never silently lost in the thread
            failed.append(repr(exc))
        finally:
            ws.close()

    seconds = 1.0 + args.moves * args.move_every + 2.0
    thread = threading.Thread(target=mover, daemon=True)
    thread.start()
    res = _load.concurrent(port, FRIENDLY, reqs, args.swap_concurrency, seconds)
    thread.join()
    if failed:
        raise RuntimeError(f"moving the alias failed: {failed[0]}")
    lags = []
    for k, (t, version) in enumerate(moves):
        until = moves[k + 1][0] if k + 1 < len(moves) else float("inf")
        seen = next((t1 for t1, v in res.timeline if t < t1 < until and v == version), None)
        if seen is not None:
            lags.append((seen - t) * 1000)
    return {
        "requests": sum(res.statuses.values()),
        "failures": sum(n for k, n in res.statuses.items() if k != 200) + sum(res.errors.values()),
        "statuses": {str(k): v for k, v in res.statuses.items()},
        "errors": dict(res.errors),
        "versions": {str(k): v for k, v in sorted(res.versions.items(), key=str)},
        "distinct_versions": len(res.versions),
        "moves": len(moves),
        "moves_seen": len(lags),
        "lag_ms_median": round(sorted(lags)[len(lags) // 2], 1) if lags else None,
        "lag_ms_max": round(max(lags), 1) if lags else None,
        **percentiles(res.latencies),
        "seconds": round(res.seconds, 2),
    }


def wrk_version() -> str:
    res = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (res.stdout + res.stderr).split("[")[0].replace("wrk", "").strip() or "unknown"
