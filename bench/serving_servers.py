"""HTTP server: uvicorn against granian on the same app, in alternating rounds (issue 22).

granian is a Rust HTTP server that runs ASGI apps. This measures whether it serves
modelyard's request path faster than uvicorn, which ``modelyard serve`` runs today, and
checks what a switch would change. Two apps, each under every server:

- ``modelyard``: ``create_app`` serving ``lr20@production`` (a LogisticRegression on 20
  features) with the prediction log on and logging at info, as ``modelyard serve`` builds it.
- ``bare``: one raw ASGI callable: orjson in, ``predict_proba`` inline, orjson out; the
  floor a server can reach with this model.

Servers: uvicorn as ``modelyard serve`` runs it (uvloop, httptools, access log off,
modelyard's JSON logging, no server header, 30 s graceful drain), and granian (ASGI, HTTP/1,
uvloop, one worker, one runtime thread, same logging) with its default asyncio task
implementation and with ``--task-impl rust`` (the successor of 1.x's ``--opt``). All
servers run at once, idle between turns; each round measures every (app, server) in an
order rotated by one, so drift in the machine's load spreads over all of them:

1. c=1: ``--requests`` single-row POSTs (after 200 untimed) on one keep-alive connection.
2. c=32: ``wrk`` (one thread) for ``--seconds``; requests/s, p99, CPU of server and wrk.

Reported: medians over rounds and the best round, the ratio granian/uvicorn round by round,
1-minute load averages. Then checks: the same answers (status, error code, headers) from
both servers; lifespan start-up and shutdown, a SIGTERM while a request is in flight, two
workers (fresh servers); and HTTP hardening: how long each server holds a connection that
sends partial headers, trickles headers, stops mid-body or idles, and what a concurrency
cap does.

    bash bench/setup_granian.sh              # bench/.venv-granian (see the script for why)
    .venv/bin/python bench/serving_servers.py --rounds 5 --requests 1000 --seconds 8

Writes bench/out/serving_servers.json and bench/out/serving_servers.md (the RESULTS.md text).
On a shared machine whose load drifts, run it more than once (``--skip-checks`` after the
first) and report the runs together: ``--pool A.json B.json ...``; the ratios are taken
round by round, between samples minutes apart.
Hand-written because neither server ships a comparison of this kind, and the apps must be
the same objects under both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
GRANIAN_VENV = BENCH / ".venv-granian"
MODEL = "lr20"
PATHS = {"modelyard": f"/v1/models/{MODEL}/predict", "bare": "/predict"}
WS_ENV, PICKLE_ENV, EVENTS_ENV = "BENCH_SERVERS_WS", "BENCH_SERVERS_PICKLE", "BENCH_SERVERS_EVENTS"
NAMES = [f"f{i}" for i in range(20)]


# -- the apps (built inside each server process) -----------------------------------------------
def modelyard_app() -> Any:
    """modelyard's app as ``modelyard serve`` builds it; a factory both servers call."""
    from modelyard.serving._run import settle_heap
    from modelyard.serving.app import create_app
    from modelyard.workspace import Workspace

    ws = Workspace(Path(os.environ[WS_ENV]))
    app = create_app(
        ws.registry, [f"{MODEL}@production"], features=ws.features, prediction_log=ws.predictions
    )
    settle_heap()
    return _recorded(app)


def bare_app() -> Any:
    """The floor: no validation, metrics or logging; ``/sleep?s=N`` for the drain check."""
    import asyncio

    import numpy as np
    import orjson

    model = pickle.loads(Path(os.environ[PICKLE_ENV]).read_bytes())
    json_headers = [(b"content-type", b"application/json")]

    async def answer(send: Any, status: int, body: bytes) -> None:
        headers = [*json_headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        if path == "/predict":
            record = orjson.loads(body)
            proba = model.predict_proba(np.array([[record[n] for n in NAMES]]))[0]
            out = {"probability_0": float(proba[0]), "probability_1": float(proba[1])}
            await answer(send, 200, orjson.dumps({"prediction": out}))
        elif path == "/sleep":
            await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2] or 1))
            await answer(send, 200, orjson.dumps({"pid": os.getpid()}))
        else:  # /readyz and the rest
            await answer(send, 200, orjson.dumps({"pid": os.getpid()}))

    return _recorded(app)


def _recorded(app: Any) -> Any:
    """``app``, writing each lifespan message it sends to the file in BENCH_SERVERS_EVENTS
    (only in the lifecycle checks, so the timed servers run the app unwrapped)."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return app

    async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)

        async def send_and_note(message: dict[str, Any]) -> None:
            with open(path, "a") as f:
                f.write(f"{os.getpid()} {message['type']}\n")
            await send(message)

        await app(scope, receive, send_and_note)

    return recorded


def serve_uvicorn(app_name: str, port: int, limit_concurrency: int | None) -> None:
    """uvicorn with the settings of ``modelyard serve`` (serving/_run.py), ws off as granian."""
    import uvicorn

    from modelyard.serving import _logging
    from modelyard.serving._workers import run_until_sigterm

    _logging.configure("info")
    app = modelyard_app() if app_name == "modelyard" else bare_app()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_config=_logging.log_config("info"),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        limit_concurrency=limit_concurrency,
    )
    run_until_sigterm(uvicorn.Server(config))


# -- starting servers ----------------------------------------------------------------------------
SERVERS: dict[str, list[str]] = {
    "uvicorn": [],
    "granian": ["--task-impl", "asyncio"],
    "granian-rust-task": ["--task-impl", "rust"],
}


def granian_site() -> Path:
    """The granian venv's site-packages; checked to match this interpreter."""
    libs = sorted((GRANIAN_VENV / "lib").glob("python3*/site-packages/granian"))
    if not libs:
        raise SystemExit("bench/.venv-granian has no granian: run 'bash bench/setup_granian.sh'")
    site = libs[0].parent
    if site.parent.name != f"python{sys.version_info[0]}.{sys.version_info[1]}":
        raise SystemExit(
            f"bench/.venv-granian is for {site.parent.name}, this is Python "
            f"{sys.version_info[0]}.{sys.version_info[1]}: rerun 'bash bench/setup_granian.sh'"
        )
    return site


def granian_log_config(tmp: Path) -> Path:
    """modelyard's JSON logging (as uvicorn gets it), with granian's loggers routed through it."""
    from modelyard.serving import _logging

    config = _logging.log_config("info")
    config["formatters"]["json"] = {"()": "modelyard.serving._logging.JsonFormatter"}
    named = config["loggers"]["modelyard"]
    config["loggers"] |= {"_granian": named, "granian.access": {**named, "level": "WARNING"}}
    path = tmp / "granian-log.json"
    path.write_text(json.dumps(config))
    return path


def command(server: str, app: str, port: int, tmp: Path, *extra: str) -> list[str]:
    if server == "uvicorn":
        return [sys.executable, __file__, "_uvicorn", app, str(port), *extra]
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--http",
        "1",
        "--no-ws",
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--runtime-threads",
        "1",
        "--runtime-mode",
        "st",
        "--backpressure",
        "128",  # above c=32: never what limits the timed runs
        "--workers-kill-timeout",
        "30",  # modelyard serve's graceful drain
        "--log-level",
        "info",
        "--log-config",
        str(tmp / "granian-log.json"),
        "--port",
        str(port),
        *SERVERS[server],
        *extra,
        "--factory",
        f"serving_servers:{app}_app",
    ]


def server_env(tmp: Path, site: Path, **more: str) -> dict[str, str]:
    """Everything but granian from modelyard's venv: granian's venv only adds granian."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH.parent / "src"), str(BENCH), str(site)])
    env[WS_ENV] = str(tmp / "ws")
    env[PICKLE_ENV] = str(tmp / "lr20.pkl")
    return env | more


def build(tmp: Path) -> list[bytes]:
    """The workspace (lr20@production), the same model pickled for the bare app; bodies."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from modelyard.workspace import Workspace

    x, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    frame = pd.DataFrame(x, columns=NAMES)
    ws = Workspace.init(tmp / "ws")
    with ws.start_run("bench-servers") as run:
        model = LogisticRegression(max_iter=500).fit(frame, y)
        logged = ws.registry.log_model(run, model, input_example=frame.head(20))
    version = ws.registry.register(MODEL, logged)
    ws.registry.set_alias(MODEL, "production", version.version)
    ws.close()
    # Fitted on the array, not the frame: the same coefficients, and no feature-name warning
    # from scikit-learn on every call of the bare app.
    bare = LogisticRegression(max_iter=500).fit(x, y)
    assert np.allclose(bare.coef_, model.coef_)
    (tmp / "lr20.pkl").write_bytes(pickle.dumps(bare))
    rows = [dict(zip(NAMES, map(float, r), strict=True)) for r in x[:500]]
    return [json.dumps(r, separators=(",", ":")).encode() for r in rows]


# -- the timed rounds ----------------------------------------------------------------------------
def measure(port: int, pid: int, path: str, reqs: list[bytes], args: argparse.Namespace) -> dict:
    import _load
    from _common import percentiles
    from _procs import tree_cpu_seconds

    load0 = os.getloadavg()[0]
    seq = _load.sequential(port, path, reqs, args.requests, warmup=200)
    cpu0 = sum(tree_cpu_seconds(pid).values())
    res = _load.wrk(port, path, reqs[:100], args.concurrency, args.seconds)
    cpu1 = sum(tree_cpu_seconds(pid).values())
    secs = res["seconds"]
    return {
        "c1": {**percentiles(seq.latencies), "failures": seq.failures},
        "c32": {
            "rps": round((res["requests"] - res["status"]) / secs, 1),
            "p50_ms": round(res["p50_us"] / 1000, 3),
            "p99_ms": round(res["p99_us"] / 1000, 3),
            "failures": res["status"] + res["socket_errors"],
            "server_cores": round((cpu1 - cpu0) / secs, 2),
            "wrk_cores": round(res["wrk_cpu_s"] / secs, 2),
        },
        "load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def start_all(stack: contextlib.ExitStack, tmp: Path, site: Path, reqs: list[bytes], args: Any):
    """Every (app, server) of the timed rounds, started, checked and warmed up: port, pid."""
    import _load
    from _procs import free_port, post, running

    live = {}
    for app in args.apps:
        for server in args.servers:
            port = free_port()
            cmd = command(server, app, port, tmp)
            log = tmp / f"{app}-{server}.log"
            env = server_env(tmp, site)
            proc = stack.enter_context(running(cmd, port, "/readyz", log, env=env, cwd=BENCH))
            status, raw = post(port, PATHS[app], reqs[0])
            if status != 200:
                raise SystemExit(f"{app} under {server} answered {status}: {raw[:200]!r}")
            _load.wrk(port, PATHS[app], reqs[:100], args.concurrency, 2)  # warm-up
            live[(app, server)] = (port, proc.pid)
    return live


def rounds(live: dict, reqs: list[bytes], args: argparse.Namespace) -> dict[str, list[dict]]:
    slots = list(live)
    runs: dict[str, list[dict]] = {f"{a}/{s}": [] for a, s in slots}
    for r in range(args.rounds):
        k = r % len(slots)
        for app, server in slots[k:] + slots[:k]:
            print(f"round {r + 1}: {app} under {server}", file=sys.stderr)
            port, pid = live[(app, server)]
            runs[f"{app}/{server}"].append(measure(port, pid, PATHS[app], reqs, args))
    return runs


def summary(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    out = {}
    for key, rs in runs.items():
        c1p50 = [r["c1"]["p50_ms"] for r in rs]
        c1p99 = [r["c1"]["p99_ms"] for r in rs]
        rps = [r["c32"]["rps"] for r in rs]
        out[key] = {
            "c1_p50_ms": statistics.median(c1p50),
            "c1_p50_best": min(c1p50),
            "c1_p99_ms": statistics.median(c1p99),
            "c1_p99_best": min(c1p99),
            "c32_rps": statistics.median(rps),
            "c32_rps_best": max(rps),
            "c32_p99_ms": statistics.median(r["c32"]["p99_ms"] for r in rs),
            "c32_server_cores": statistics.median(r["c32"]["server_cores"] for r in rs),
            "c32_wrk_cores": statistics.median(r["c32"]["wrk_cores"] for r in rs),
            "failures": sum(r["c1"]["failures"] + r["c32"]["failures"] for r in rs),
        }
    return out


# -- the same answers from both servers ------------------------------------------------------------
def raw_request(port: int, data: bytes, timeout: float = 5.0) -> dict[str, Any]:
    """Send ``data`` as is on a new connection; status, error code and the headers that matter."""
    import http.client
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            body = resp.read()
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            return {"status": type(exc).__name__}
    try:
        code = json.loads(body).get("code") if body else None
    except (ValueError, AttributeError):
        code = None
    return {
        "status": resp.status,
        "code": code,
        "content_type": resp.getheader("content-type"),
        "request_id": resp.getheader("x-request-id"),
        "server_header": resp.getheader("server"),
    }


def parity_cases(body: bytes) -> dict[str, bytes]:
    path = PATHS["modelyard"]

    def post(data: bytes, *headers: str) -> bytes:
        head = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", *headers]
        if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
            head.append(f"Content-Length: {len(data)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + data

    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    bad_type = json.dumps({n: "x" for n in NAMES}).encode()
    return {
        "valid": post(body),
        "client request id": post(body, "X-Request-Id: client-chosen-1"),
        "invalid JSON": post(b"{not json"),
        "wrong type": post(bad_type),
        "missing fields": post(b"{}"),
        "chunked body": post(chunked, "Transfer-Encoding: chunked"),
        "11 MiB declared": post(b"", "Content-Length: 11534336"),
        "unknown route": b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "wrong method": f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "metrics": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    }


def parity(live: dict, body: bytes) -> dict[str, Any]:
    servers = [s for a, s in live if a == "modelyard"]
    seen = {
        case: {s: raw_request(live[("modelyard", s)][0], data) for s in servers}
        for case, data in parity_cases(body).items()
    }
    differ = {}
    for case, by_server in seen.items():
        for s, got in by_server.items():
            ref = by_server[servers[0]]
            keys = [k for k in got if k not in ("request_id", "server_header")]
            keys += ["request_id"] if case == "client request id" else []
            diff = {k: [ref.get(k), got.get(k)] for k in keys if got.get(k) != ref.get(k)}
            if diff:
                differ.setdefault(case, {})[s] = diff
    headers = {s: seen["valid"][s]["server_header"] for s in servers}
    return {"answers": seen, "differences_from_" + servers[0]: differ, "server_header": headers}


# -- HTTP hardening: how long a server holds a misbehaving connection --------------------------
HOLDS = ("no_bytes", "partial_headers", "trickle_headers", "partial_body", "idle_keepalive")


def hold(port: int, kind: str, cap: float, body: bytes) -> dict[str, Any]:
    """Open a connection that misbehaves as ``kind``; when (if before ``cap`` s) the server
    closes it, and the first line of whatever it answered."""
    import http.client
    import socket
    import time

    line = f"POST {PATHS['modelyard']} HTTP/1.1\r\nHost: x\r\n"
    t0 = time.monotonic()
    if kind == "idle_keepalive":  # one whole request, then nothing
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=cap)
        conn.request("POST", PATHS["modelyard"], body, {"content-type": "application/json"})
        conn.getresponse().read()
        sock, t0 = conn.sock, time.monotonic()
    else:
        sock = socket.create_connection(("127.0.0.1", port), timeout=cap)
        if kind in ("partial_headers", "trickle_headers"):
            sock.sendall(line.encode())
        elif kind == "partial_body":
            sock.sendall(
                f"{line}Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{{".encode()
            )
    answered, sent = None, 0
    try:
        while (left := cap - (time.monotonic() - t0)) > 0:
            sock.settimeout(min(left, 2.0) if kind == "trickle_headers" else left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if kind == "trickle_headers":  # one more header line every 2 s
                    sent += 1
                    sock.sendall(f"X-Pad-{sent}: 1\r\n".encode())
                continue
            if not data:
                return {"closed_after_s": round(time.monotonic() - t0, 1), "answered": answered}
            answered = answered or data.split(b"\r\n", 1)[0].decode(errors="replace")
    except (ConnectionResetError, BrokenPipeError) as exc:
        return {"closed_after_s": round(time.monotonic() - t0, 1), "answered": type(exc).__name__}
    finally:
        sock.close()
    return {"closed_after_s": None, "answered": answered, "held_for_s": cap}


def holds(ports: dict[str, int], cap: float, body: bytes) -> dict[str, dict[str, Any]]:
    """Every kind against every server at once, so the whole check takes ``cap`` seconds."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(ports) * len(HOLDS)) as pool:
        futures = {
            (s, k): pool.submit(hold, port, k, cap, body)
            for s, port in ports.items()
            for k in HOLDS
        }
    return {s: {k: futures[(s, k)].result() for k in HOLDS} for s in ports}


def capped(port: int, n: int = 4, sleep_s: float = 1.0) -> list[dict[str, Any]]:
    """``n`` concurrent requests that each take ``sleep_s``: statuses and times under a cap."""
    import http.client
    import time
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> dict[str, Any]:
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", f"/sleep?s={sleep_s}")
            status: int | str = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
        finally:
            conn.close()
        return {"status": status, "seconds": round(time.monotonic() - t0, 2)}

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


# -- lifecycle: lifespan, SIGTERM with a request in flight, two workers -------------------------
GET_READYZ = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
GET_SLEEP = b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n"


def get(port: int, path: str) -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def lifecycle(server: str, app: str, tmp: Path, site: Path, *extra: str) -> dict[str, Any]:
    import signal
    import threading
    import time

    from _procs import Unavailable, free_port, running

    port = free_port()
    events = tmp / f"events-{server}-{app}-{len(extra)}.txt"
    env = server_env(tmp, site, **{EVENTS_ENV: str(events)})
    log = tmp / f"lifecycle-{server}-{app}-{len(extra)}.log"
    out: dict[str, Any] = {}
    try:
        with running(
            command(server, app, port, tmp, *extra), port, "/readyz", log, env=env, cwd=BENCH
        ) as proc:
            out["startup"] = _events(events)
            if extra and app == "bare":  # two workers: does each answer? (bare says its pid)
                pids = {json.loads(get(port, "/pid"))["pid"] for _ in range(40)}
                out["answering_worker_pids"] = len(pids)
            inflight: dict[str, Any] = {}

            def slow() -> None:
                t0 = time.monotonic()
                inflight["status"] = raw_request(port, GET_SLEEP, timeout=40)["status"]
                inflight["seconds"] = round(time.monotonic() - t0, 2)

            thread = threading.Thread(target=slow)
            if app == "bare":
                thread.start()
                time.sleep(0.5)
            t0 = time.monotonic()
            os.kill(proc.pid, signal.SIGTERM)  # the main process only, as a process manager does
            time.sleep(0.3)
            try:
                out["new_request_after_sigterm"] = raw_request(port, GET_READYZ, timeout=3)[
                    "status"
                ]
            except OSError as exc:
                out["new_request_after_sigterm"] = type(exc).__name__
            try:
                proc.wait(timeout=45)
                out["exit_code"] = proc.returncode
                out["exited_after_s"] = round(time.monotonic() - t0, 2)
            except subprocess.TimeoutExpired:
                out["exit_code"] = "still running after 45 s"
            if app == "bare":
                thread.join()
                out["in_flight_request"] = inflight
            out["events"] = _events(events)
    except Unavailable as exc:
        out["failed"] = str(exc)
    return out


def _events(path: Path) -> dict[str, int]:
    lines = path.read_text().split() if path.exists() else []
    kinds = lines[1::2]
    return {k: kinds.count(k) for k in sorted(set(kinds))} | {"pids": len(set(lines[::2]))}


# -- report ----------------------------------------------------------------------------------------
HEADER = "## HTTP server: uvicorn vs granian (issue 22)"


MEASURES = {  # name: (value of one round, whether lower is better)
    "c=1 p50": (lambda r: r["c1"]["p50_ms"], True),
    "c=1 p99": (lambda r: r["c1"]["p99_ms"], True),
    "c=32 req/s": (lambda r: r["c32"]["rps"], False),
    "c=32 p99": (lambda r: r["c32"]["p99_ms"], True),
}


def paired(runs: dict[str, list[dict]], key: str, base_key: str) -> dict[str, str]:
    """Per measure: the median of each round's ratio to the base server (both from the same
    round, minutes apart, so the machine's load drifts less between them), the range, and
    in how many rounds this server did better."""
    out = {}
    pairs = list(zip(runs[key], runs[base_key], strict=True))
    for name, (value, lower_better) in MEASURES.items():
        ratios = [value(a) / value(b) for a, b in pairs]
        better = sum((x < 1) if lower_better else (x > 1) for x in ratios)
        out[name] = (
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}), "
            f"better in {better}/{len(ratios)}"
        )
    return out


def report(out: dict[str, Any]) -> str:
    s, m, args, runs = out["summary"], out["machine"], out["settings"], out["runs"]
    base = args["servers"][0]
    loads = [x for rs in runs.values() for r in rs for x in r["load_1min"]]
    n = len(next(iter(runs.values())))
    cmd = (
        f"    .venv/bin/python bench/serving_servers.py --rounds {args['rounds']} "
        f"--requests {args['requests']} --seconds {args['seconds']:g}"
    )
    lines = [HEADER, "", "    bash bench/setup_granian.sh", cmd, ""]
    if out.get("pooled"):
        lines[-1:] = [
            "    # after each run: cp bench/out/serving_servers.json bench/out/runK.json",
            "    .venv/bin/python bench/serving_servers.py --pool "
            + " ".join(f"bench/out/run{k + 1}.json" for k in range(out["pooled"])),
            "",
            f"{out['pooled']} runs of the first command (`--skip-checks` after the first), "
            "reported together.",
            "",
        ]
    lines += [
        f"{m['nproc']} cores shared with the load generator; Python {m['python']}, uvicorn "
        f"{m['uvicorn']}, granian {m['granian']}, uvloop {m['uvloop']}; commit "
        f"{m['modelyard_commit']}. {n} rounds, each (app, server) once per round in rotated "
        f"order; c=1: {args['requests']} requests on one keep-alive connection; c=32: wrk, "
        f"1 thread, {args['seconds']:g} s. 1-min load average {min(loads):g} to {max(loads):g} "
        "during the rounds. Median of rounds (best round in brackets).",
        "",
        "| app | server | c=1 p50 ms | c=1 p99 ms | c=32 req/s | c=32 p99 ms | server cores "
        "| wrk cores | failures |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, v in s.items():
        app, server = key.split("/")
        lines.append(
            f"| {app} | {server} | {v['c1_p50_ms']:.3f} ({v['c1_p50_best']:.3f}) "
            f"| {v['c1_p99_ms']:.3f} ({v['c1_p99_best']:.3f}) "
            f"| {v['c32_rps']:,.0f} ({v['c32_rps_best']:,.0f}) | {v['c32_p99_ms']:.2f} "
            f"| {v['c32_server_cores']:.2f} | {v['c32_wrk_cores']:.2f} | {v['failures']} |"
        )
    lines += [
        "",
        f"Ratio to {base}, round by round: median (range), and the rounds where the server did "
        "better (under 1 is better for latency, over 1 for req/s):",
        "",
        "| app | server | " + " | ".join(MEASURES) + " |",
        "|---|---|" + "---|" * len(MEASURES),
    ]
    for key in s:
        app, server = key.split("/")
        if server != base:
            cells = paired(runs, key, f"{app}/{base}").values()
            lines.append(f"| {app} | {server} | " + " | ".join(cells) + " |")
    if "holds" in out:
        cap = args["hold_seconds"]
        lines += [
            "",
            f"Misbehaving connections (closed after s; 'open' = still open at {cap:g} s):",
            "",
        ]
        lines += ["| server | " + " | ".join(HOLDS) + " |", "|---" * (len(HOLDS) + 1) + "|"]
        for server, kinds in out["holds"].items():
            cells = []
            for k in HOLDS:
                h = kinds[k]
                cell = "open" if h["closed_after_s"] is None else f"{h['closed_after_s']:g}"
                cells.append(cell + (f" ({h['answered']})" if h.get("answered") else ""))
            lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines + checks_report(out)) + "\n"


def checks_report(out: dict[str, Any]) -> list[str]:
    lines = []
    if "parity" in out:
        diffs = next(v for k, v in out["parity"].items() if k.startswith("differences"))
        lines += [
            "",
            f"Same requests, {len(out['parity']['answers'])} cases (status, error code, "
            "content type, request id, server header); where the servers differ:",
            "",
        ]
        lines.append(f"- the Server header: {out['parity']['server_header']}")
        for case, by_server in diffs.items():
            for server, d in by_server.items():
                what = "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in d.items())
                lines.append(f"- {case}, {server}: {what}")
    if "lifecycle" in out:
        lines += [
            "",
            "| app / server | lifespan start, stop | request in flight at SIGTERM | exit code "
            "(s after SIGTERM) | new request after SIGTERM |",
            "|---|---|---|---|---|",
        ]
        for key, v in out["lifecycle"].items():
            ev = v.get("events", {})
            life = (
                f"{ev.get('lifespan.startup.complete', 0)}, "
                f"{ev.get('lifespan.shutdown.complete', 0)} ({ev.get('pids', 0)} pids)"
            )
            fl = v.get("in_flight_request")
            flight = "-" if fl is None else f"{fl['status']} after {fl['seconds']} s"
            lines.append(
                f"| {key} | {life} | {flight} | {v.get('exit_code')} "
                f"({v.get('exited_after_s')}) | {v.get('new_request_after_sigterm')} |"
            )
    for label, reqs in out.get("capped", {}).items():
        got = ", ".join(f"{r['status']} in {r['seconds']} s" for r in reqs)
        lines.append(f"\n{label}, 4 concurrent 1 s requests: {got}.")
    return lines


def versions(site: Path) -> dict[str, str]:
    from importlib.metadata import version

    dist = next(site.glob("granian-*.dist-info")).name
    return {
        "uvicorn": version("uvicorn"),
        "uvloop": version("uvloop"),
        "granian": dist.removeprefix("granian-").removesuffix(".dist-info"),
    }


def main() -> None:
    import signal

    import _load
    from _common import machine

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000, help="timed requests at c=1")
    parser.add_argument("--seconds", type=float, default=8, help="length of each c=32 run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--apps", nargs="+", default=["modelyard", "bare"], choices=list(PATHS))
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=list(SERVERS))
    parser.add_argument("--hold-seconds", type=float, default=40, help="cap of each hold check")
    parser.add_argument("--skip-checks", action="store_true", help="the timed rounds only")
    parser.add_argument(
        "--pool", nargs="+", type=Path, metavar="JSON", help="report these runs' rounds together"
    )
    args = parser.parse_args()
    if args.pool:
        return pool(args.pool)
    if _load.wrk_available() is None:
        raise SystemExit("wrk is not installed: run 'bash bench/setup_granian.sh'")
    site = granian_site()
    # A SIGTERM runs the finally blocks too, so no server outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: dict[str, Any] = {"settings": vars(args), "machine": machine(**versions(site))}
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp_name:
        tmp = Path(tmp_name)
        reqs = build(tmp)
        granian_log_config(tmp)
        load0 = round(os.getloadavg()[0], 2)
        with contextlib.ExitStack() as stack:
            live = start_all(stack, tmp, site, reqs, args)
            if not args.skip_checks and "modelyard" in args.apps:
                out["parity"] = parity(live, reqs[0])
            out["runs"] = rounds(live, reqs, args)
            out["load_1min"] = [load0, round(os.getloadavg()[0], 2)]
            if not args.skip_checks and "modelyard" in args.apps:
                out["holds"] = checks(stack, live, tmp, site, reqs[0], args)
        if not args.skip_checks:
            out["lifecycle"], out["capped"] = lifecycle_checks(tmp, site)
    out["summary"] = summary(out["runs"])
    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / "serving_servers.json").write_text(json.dumps(out, indent=2, default=str))
    text = report(out)
    (BENCH / "out" / "serving_servers.md").write_text(text)
    print(text)


def pool(paths: list[Path]) -> None:
    """One report over the rounds of several runs (the first run's checks and settings)."""
    outs = [json.loads(p.read_text()) for p in paths]
    out = {**next((o for o in outs if "holds" in o), outs[0]), "pooled": len(outs)}
    out["runs"] = {k: [r for o in outs for r in o["runs"][k]] for k in outs[0]["runs"]}
    out["summary"] = summary(out["runs"])
    text = report(out)
    (BENCH / "out" / "serving_servers.md").write_text(text)
    print(text)


def checks(
    stack: contextlib.ExitStack,
    live: dict,
    tmp: Path,
    site: Path,
    body: bytes,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The hold checks on the timed modelyard servers, plus granian with a 5 s header timeout."""
    from _procs import free_port, running

    ports = {s: live[(a, s)][0] for a, s in live if a == "modelyard"}
    port = free_port()
    cmd = command("granian", "modelyard", port, tmp, "--http1-header-read-timeout", "5000")
    log = tmp / "granian-header-timeout.log"
    stack.enter_context(running(cmd, port, "/readyz", log, env=server_env(tmp, site), cwd=BENCH))
    ports["granian --http1-header-read-timeout 5000"] = port
    print(f"hold checks: {args.hold_seconds:g} s", file=sys.stderr)
    return holds(ports, args.hold_seconds, body)


def lifecycle_checks(tmp: Path, site: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from _procs import free_port, running

    print("lifecycle checks", file=sys.stderr)
    life = {}
    for server in ("uvicorn", "granian"):
        for app in ("modelyard", "bare"):
            life[f"{app}/{server}"] = lifecycle(server, app, tmp, site)
    for app in ("modelyard", "bare"):
        life[f"{app}/granian --workers 2"] = lifecycle("granian", app, tmp, site, "--workers", "2")
    capped_runs = {}
    for server, extra in (("uvicorn", ("2",)), ("granian", ("--backpressure", "2"))):
        port = free_port()
        cmd = command(server, "bare", port, tmp, *extra)
        log = tmp / f"capped-{server}.log"
        with running(cmd, port, "/readyz", log, env=server_env(tmp, site), cwd=BENCH):
            label = (
                "uvicorn limit_concurrency=2" if server == "uvicorn" else "granian --backpressure 2"
            )
            capped_runs[label] = capped(port)
    return life, capped_runs


if __name__ == "__main__" and sys.argv[1:2] == ["_uvicorn"]:
    # A server process: python bench/serving_servers.py _uvicorn APP PORT [LIMIT_CONCURRENCY]
    serve_uvicorn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
elif __name__ == "__main__":
    main()
