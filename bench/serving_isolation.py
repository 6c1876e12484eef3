"""Serving under stress (issue 22): a slow canary, load shedding at twice capacity, a soak.

A temporary workspace holds ``lr``: version 1 is the LogisticRegression of bench/serving.py
(alias ``production``, the champion); version 2 (alias ``staging``) answers the same but
sleeps ``--candidate-ms`` (200) first: a ``python``-flavor function closing over the
champion's estimator, logged with the champion's signature so the server takes it as a
candidate. Three measures, each a section of bench/RESULTS.md:

1. Isolation. Two servers run at once, both ``modelyard serve --spec``: one with an A/B
   split ``ab = { candidate = "staging", key = "f0", percent = 10 }``, one with the
   champion alone. In ``--rounds`` rounds, alternating which goes first, a closed loop of
   ``--concurrency`` (16) keep-alive connections (``_load.concurrent``) sends bodies whose
   key the split gives the champion, for ``--seconds``; against both servers an open-loop
   stream (``_open_loop.py``) sends, at the same time, bodies keyed for the candidate at
   ``--percent`` of the traffic (10% of the total, from a first look at the alone
   server's rate): the split server sends them to the candidate, the alone server answers
   them with the champion. Every answer's JSON ``variant`` is counted. Champion answers/s with the
   candidate's stream over champion answers/s alone, medians over the rounds; target at
   least 0.9. A split by key, not a random canary, because with a closed loop every
   candidate answer would hold one of the 16 connections for 200 ms: the client, not the
   server, would starve the champion. The candidate can take 10 req/s (2 threads, 200 ms):
   its stream mostly waits in, or is refused by, its own queue (``max_queue = 32``).
2. Load shedding. Capacity: ``wrk -c32`` for ``--seconds`` against ``modelyard serve
   lr@production``. Then ``modelyard serve lr@production --max-queue Q`` gets an open loop
   (``_open_loop.py``) at twice that rate for ``--shed-seconds``, each request waiting
   at most ``--client-timeout`` s; the client's pool opens 256 connections first. Q =
   capacity x SLO / 4, the README's sizing rule: a request admitted behind Q others waits
   about Q / capacity on average, a quarter of the SLO; under overload the server answers
   less than its capacity (refusing costs too), and the p99 wait is about twice the mean.
   Reported: accepted p99 against the SLO (``--slo-ms``, 25), the 503s' p99 (target 5 ms),
   requests that timed out (target 0).
3. Soak: the capacity run's server, an open loop at ``--soak-share`` (0.5) of capacity for
   ``--soak-minutes`` (10); every 5xx counted (target 0) and the server's RSS (VmRSS of
   every process, from /proc/PID/status, every 2 s): mean of the last minute over the
   first (a quarter of the run each when it is under 4 minutes); target growth under 5%.

    .venv/bin/python bench/serving_isolation.py [--only isolation,shedding,soak] [--quick]

A flag the server lacks (``--max-queue``) makes its measure "not run", said in its section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _load
import _open_loop
import _serving_sides as sides
from _common import machine, percentiles, write_section
from _isolation_report import HEADERS, isolation_section, shedding_section, soak_section
from _procs import Unavailable, free_port, post, running, settle, tree

BENCH = Path(__file__).resolve().parent
QUICK = {
    "rounds": 2,
    "seconds": 3,
    "shed_seconds": 5,
    "soak_minutes": 1.0,
}


# -- the workspace ---------------------------------------------------------------------------
def build(folder: Path, delay_ms: float) -> dict[str, Any]:
    """lr v1 (production) as in bench/serving.py, v2 (staging) the same but slow."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from modelyard.workspace import Workspace

    x, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    frame = pd.DataFrame(x, columns=sides.NAMES)
    model = LogisticRegression(max_iter=500).fit(frame, y)
    delay = delay_ms / 1000

    # Nested, so that cloudpickle saves it by value: the server cannot import this script.
    def slow(rows: pd.DataFrame) -> pd.DataFrame:
        time.sleep(delay)
        proba = model.predict_proba(rows)
        return pd.DataFrame(
            {
                "prediction": model.classes_[proba.argmax(axis=1)].astype(np.int64),
                "probability_0": proba[:, 0],
                "probability_1": proba[:, 1],
            }
        )

    ws = Workspace.init(folder / "ws")
    with ws.start_run("bench-isolation") as run:
        champion = ws.registry.log_model(run, model, input_example=frame.head(20))
        candidate = ws.registry.log_model(
            run, slow, path="slow", signature=champion.signature, input_example=frame.head(20)
        )
    ws.registry.register("lr", champion)
    ws.registry.register("lr", candidate)
    ws.registry.set_alias("lr", "production", 1)
    ws.registry.set_alias("lr", "staging", 2)
    ws.close()
    return {"workspace": folder / "ws", "rows": x[:500]}


def serve_cmd(built: dict[str, Any], port: int, *args: str) -> list[str]:
    exe = Path(sys.executable).with_name("modelyard")
    return [str(exe), "serve", *args, "--port", str(port), "-w", str(built["workspace"])]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and every descendant, in kB."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def ms(samples: list[float]) -> dict[str, float | None]:
    return percentiles(samples) if samples else {"p50_ms": None, "p99_ms": None}


# -- 1. isolation ----------------------------------------------------------------------------
def keyed_bodies(rows: Any, percent: float, candidate: bool) -> list[bytes]:
    """Request bodies whose A/B key (``f0``) the split sends to the candidate (or not):
    the server hashes ``str(f0)`` (serving/_router.py ``bucket``), and so does this."""
    from modelyard.serving._router import bucket

    out = []
    for i, row in enumerate(rows):
        record = dict(zip(sides.NAMES, (float(v) for v in row), strict=True))
        key = round(record["f0"], 3)
        while (bucket(str(key)) < percent) != candidate:
            key = round(key + 0.001, 3)
        record["f0"] = key
        out.append(json.dumps(record, separators=(",", ":")).encode())
        if i >= 99:
            break
    return out


def isolation(built: dict[str, Any], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Champion answers/s of ``--concurrency`` closed-loop connections, alone and while an
    open-loop stream of ``--percent`` of that traffic goes to the 200 ms candidate."""
    champion_bodies = keyed_bodies(built["rows"], args.percent, candidate=False)
    candidate_bodies = keyed_bodies(built["rows"], args.percent, candidate=True)
    split = f'ab = {{ candidate = "staging", key = "f0", percent = {args.percent:g} }}\n'
    specs = {"with_candidate": split, "alone": ""}
    out: dict[str, Any] = {"runs": {k: [] for k in specs}}
    with ExitStack() as stack:
        ports, procs = {}, {}
        for name, extra in specs.items():
            spec = tmp / f"{name}.toml"
            # max_queue 32: the champion's 16 connections fit; the candidate holds at most
            # 32 requests (3.2 s of its 10 req/s) and refuses the rest of its stream at once.
            spec.write_text(f'[models.lr]\nref = "lr@production"\nmax_queue = 32\n{extra}')
            ports[name] = free_port()
            cmd = serve_cmd(built, ports[name], "--spec", str(spec))
            print(f"starting the server {name} ...", file=sys.stderr)
            procs[name] = stack.enter_context(
                running(cmd, ports[name], "/readyz", tmp / f"{name}.log", env=clean_env())
            )
        probe = json.loads(post(ports["alone"], sides.FRIENDLY, champion_bodies[0])[1])
        out["champion_label"] = champion = probe.get("variant")
        # The candidate's stream: --percent of the traffic, from a first look at the rate
        # the champion's connections reach alone.
        first = _load.concurrent(
            ports["alone"], sides.FRIENDLY, champion_bodies, args.concurrency, 3, "variant"
        )
        rate = sum(first.versions.values()) / first.seconds * args.percent / (100 - args.percent)
        out["candidate_rate"] = round(rate, 1)
        out["load_1min_start"] = round(os.getloadavg()[0], 2)
        for r in range(args.rounds):
            order = list(specs) if r % 2 == 0 else list(reversed(specs))
            for name in order:
                print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr)
                # The same stream against both: the candidate's share of the traffic is
                # sent either way, and "alone" answers it with the champion.
                stream: dict[str, Any] = {"rate": round(rate, 1)}

                def send(port: int = ports[name], stream: dict[str, Any] = stream) -> None:
                    res = _open_loop.open_loop(
                        port,
                        sides.FRIENDLY,
                        candidate_bodies,
                        rate,
                        args.seconds,
                        timeout=args.client_timeout,
                    )
                    stream["statuses"] = {str(k): v for k, v in res.statuses.items()}
                    stream["timeouts"] = res.timeouts
                    stream.update({f"served_{k}": v for k, v in ms(res.served).items()})

                thread = threading.Thread(target=send)
                thread.start()
                res = _load.concurrent(
                    ports[name],
                    sides.FRIENDLY,
                    champion_bodies,
                    args.concurrency,
                    args.seconds,
                    "variant",
                )
                thread.join()
                answered = sum(res.versions.values())
                out["runs"][name].append(
                    {
                        "seconds": round(res.seconds, 2),
                        "variants": {str(k): v for k, v in res.versions.items()},
                        "champion_rps": round(res.versions.get(champion, 0) / res.seconds, 1),
                        "all_rps": round(answered / res.seconds, 1),
                        "failures": res.failures,
                        "statuses": {str(k): v for k, v in res.statuses.items()},
                        "candidate_stream": stream,
                        **ms(res.latencies),
                        "load_1min": round(os.getloadavg()[0], 2),
                    }
                )
                settle(procs[name].pid, timeout=15)  # its prediction log flushes, then the next
        out["load_1min_end"] = round(os.getloadavg()[0], 2)
    med = {k: statistics.median(r["champion_rps"] for r in v) for k, v in out["runs"].items()}
    out["champion_rps_median"] = med
    out["ratio"] = round(med["with_candidate"] / med["alone"], 3) if med["alone"] else None
    return out


# -- 2. capacity and shedding ----------------------------------------------------------------
def capacity(port: int, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    _load.wrk(port, sides.FRIENDLY, bodies[:100], 32, 1, threads=2)
    res = _load.wrk(port, sides.FRIENDLY, bodies[:100], 32, args.seconds, threads=2)
    ok = res["requests"] - res["status"]
    return {
        "rps": round(ok / res["seconds"], 1),
        "p99_ms": round(res["p99_us"] / 1000, 3),
        "non_2xx": res["status"],
        "socket_errors": res["socket_errors"],
        "load_1min": round(os.getloadavg()[0], 2),
    }


def shed_count(port: int) -> dict[str, float]:
    """``modelyard_requests_shed_total`` by label set, from /metrics."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = {}
    for line in text.splitlines():
        if line.startswith("modelyard_requests_shed_total"):
            key, value = line.rsplit(" ", 1)
            found[key[len("modelyard_requests_shed_total") :] or "{}"] = float(value)
    return found


def shedding(
    built: dict[str, Any], tmp: Path, args: argparse.Namespace, cap: dict[str, Any], help_text: str
) -> dict[str, Any]:
    if "--max-queue" not in help_text:
        return {"not_run": "modelyard has no --max-queue", "capacity": cap}
    queue = max(1, math.floor(cap["rps"] * args.slo_ms / 1000 / 4))
    rate = 2 * cap["rps"]
    port = free_port()
    cmd = serve_cmd(built, port, "lr@production", "--max-queue", str(queue))
    bodies = sides.bodies("friendly", built["rows"])
    print(f"shedding: Q={queue}, {rate:.0f} req/s ...", file=sys.stderr)
    with running(cmd, port, "/readyz", tmp / "shed.log", env=clean_env()):
        load = os.getloadavg()[0]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        res = _open_loop.open_loop(
            port, sides.FRIENDLY, bodies, rate, args.shed_seconds, timeout=args.client_timeout
        )
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        shed = shed_count(port)
    refused = [t for ts in res.refused.values() for t in ts]
    client_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {
        "capacity": cap,
        "max_queue": queue,
        "rate": round(rate, 1),
        "seconds": args.shed_seconds,
        "scheduled": res.scheduled,
        "sent": res.sent,
        "connections": res.connections,
        "statuses": {str(k): v for k, v in res.statuses.items()},
        "errors": dict(res.errors),
        "timeouts": res.timeouts,
        "accepted": {**ms(res.served), "from_schedule": ms(res.served_due)},
        "refused": {str(k): ms(v) | {"count": len(v)} for k, v in res.refused.items()},
        "refused_all": ms(refused),
        "client_lag": ms(res.lag),
        "client_cores": round(client_cpu / res.seconds, 2),
        "shed_metric": shed,
        "load_1min": round(load, 2),
        "load_1min_end": round(os.getloadavg()[0], 2),
    }


# -- 3. soak ---------------------------------------------------------------------------------
def soak(
    port: int, pid: int, bodies: list[bytes], args: argparse.Namespace, cap: dict[str, Any]
) -> dict[str, Any]:
    total = args.soak_minutes * 60
    rate = args.soak_share * cap["rps"]
    chunk = min(30.0, total / 4)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, rss_kb(pid)))
            stop.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    timeouts = 0
    chunks = []
    load = os.getloadavg()[0]
    try:
        while time.perf_counter() - t0 < total:
            left = total - (time.perf_counter() - t0)
            res = _open_loop.open_loop(
                port, sides.FRIENDLY, bodies, rate, min(chunk, left), args.client_timeout
            )
            for k, v in res.statuses.items():
                statuses[str(k)] = statuses.get(str(k), 0) + v
            for k, v in res.errors.items():
                errors[k] = errors.get(k, 0) + v
            timeouts += res.timeouts
            chunks.append({"at_s": round(time.perf_counter() - t0), **ms(res.served_due)})
            print(f"soak: {chunks[-1]}", file=sys.stderr)
    finally:
        stop.set()
        sampler.join()
    window = min(60.0, total / 4)
    end = samples[-1][0] if samples else 0.0
    first = [kb for t, kb in samples if t <= window]
    last = [kb for t, kb in samples if t >= end - window]
    growth = statistics.fmean(last) / statistics.fmean(first) - 1 if first and last else None
    return {
        "minutes": args.soak_minutes,
        "rate": round(rate, 1),
        "share": args.soak_share,
        "capacity": cap,
        "statuses": statuses,
        "errors": errors,
        "timeouts": timeouts,
        "five_xx": sum(v for k, v in statuses.items() if k.startswith("5")),
        "requests": sum(statuses.values()),
        "chunks": chunks,
        "window_s": window,
        "rss_first_kb": round(statistics.fmean(first)) if first else None,
        "rss_last_kb": round(statistics.fmean(last)) if last else None,
        "rss_growth": None if growth is None else round(growth, 4),
        "rss_samples": samples,
        "load_1min": round(load, 2),
        "load_1min_end": round(os.getloadavg()[0], 2),
    }


# -- main ------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="isolation,shedding,soak")
    parser.add_argument("--rounds", type=int, default=3, help="isolation rounds")
    parser.add_argument("--seconds", type=int, default=10, help="each isolation/capacity run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--percent", type=float, default=10, help="canary share")
    parser.add_argument("--candidate-ms", type=float, default=200, help="candidate's sleep")
    parser.add_argument("--shed-seconds", type=float, default=10)
    parser.add_argument("--slo-ms", type=float, default=25)
    parser.add_argument("--client-timeout", type=float, default=5, help="s per request")
    parser.add_argument("--soak-minutes", type=float, default=10)
    parser.add_argument("--soak-share", type=float, default=0.5, help="of capacity")
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + str(QUICK))
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in sys.argv[1:]}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(args.only) - set(HEADERS)
    if unknown:
        raise SystemExit(f"--only {','.join(sorted(unknown))}: use {', '.join(HEADERS)}")
    return args


def main() -> None:
    args = parse_args()
    if _load.wrk_available() is None:
        raise SystemExit("wrk is not installed: run 'apt-get install -y wrk'")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: dict[str, Any] = {"settings": {**vars(args)}, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp_name:
        tmp = Path(tmp_name)
        built = build(tmp, args.candidate_ms)
        help_text = sides.serve_help()
        if "isolation" in args.only:
            try:
                out["isolation"] = isolation(built, tmp, args)
            except Unavailable as exc:
                out["isolation"] = {"not_run": f"a server failed: {exc}"}
        if {"shedding", "soak"} & set(args.only):
            bodies = sides.bodies("friendly", built["rows"])
            port = free_port()
            cmd = serve_cmd(built, port, "lr@production")
            try:
                with running(cmd, port, "/readyz", tmp / "default.log", env=clean_env()) as proc:
                    print("capacity ...", file=sys.stderr)
                    cap = capacity(port, bodies, args)
                    if "shedding" in args.only:
                        try:
                            out["shedding"] = shedding(built, tmp, args, cap, help_text)
                        except Unavailable as exc:
                            out["shedding"] = {"not_run": f"the server failed: {exc}"}
                    if "soak" in args.only:
                        out["soak"] = soak(port, proc.pid, bodies, args, cap)
            except Unavailable as exc:
                for key in ("shedding", "soak"):
                    if key in args.only:
                        out.setdefault(key, {"not_run": f"the server failed: {exc}"})
    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / "serving-isolation.json").write_text(json.dumps(out, indent=2, default=str))
    writers = {"isolation": isolation_section, "shedding": shedding_section, "soak": soak_section}
    for key in args.only:
        text = writers[key](out)
        print(text)
        if not args.no_write:
            write_section(BENCH / "RESULTS.md", HEADERS[key], text)


if __name__ == "__main__":
    main()
