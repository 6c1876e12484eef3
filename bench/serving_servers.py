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
cap does. The checks are in bench/_servers_checks.py.

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
import sys
import tempfile
from pathlib import Path
from typing import Any

from _servers_checks import checks, checks_report, lifecycle_checks, parity
from _servers_common import (
    BENCH,
    EVENTS_ENV,
    MODEL,
    NAMES,
    PATHS,
    PICKLE_ENV,
    SERVERS,
    WS_ENV,
    command,
    server_env,
)

GRANIAN_VENV = BENCH / ".venv-granian"


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


# -- starting servers (the command line and environment: _servers_common.py) ---------------------
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
    return "\n".join(lines + checks_report(out)) + "\n"


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


if __name__ == "__main__" and sys.argv[1:2] == ["_uvicorn"]:
    # A server process: python bench/serving_servers.py _uvicorn APP PORT [LIMIT_CONCURRENCY]
    serve_uvicorn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
elif __name__ == "__main__":
    main()
