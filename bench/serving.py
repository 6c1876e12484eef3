"""Serving: modelyard's server against BentoML and MLflow's model server, same model, same run.

A LogisticRegression on 20 float features (scikit-learn's ``make_classification``, seed 0,
5,000 rows) is registered in a temporary modelyard workspace as ``lr`` (versions 1 and 2)
and pickled for the peers, which load that very pickle in their own venvs. Every server runs
as a subprocess on 127.0.0.1 and is stopped (with every process it started) at the end, on error
too. Measured, one server at a time:

1. c=1: 2,000 single-row requests (after 200 warm-up) on one keep-alive connection
   (``http.client``); p50/p99. modelyard: ``POST /v1/models/lr/predict`` (a JSON record)
   and ``POST /v2/models/lr/infer`` (Open Inference Protocol v2, one [1, 20] FP64 tensor).
2. c=32 for 15 s with ``wrk`` (4 threads started 50 ms apart, after 3 s of warm-up), 2
   runs, the best kept: req/s, p50/p99 and the CPU each server process used.
   modelyard: ``modelyard serve lr@production --max-batch-size 64 --max-latency-ms 2
   --workers N``; N = 1 and 2 for all three servers.
3. Hot swap: ``modelyard serve lr@production --poll-interval 0.5`` under c=8 while the
   alias moves between versions 1 and 2 ten times; failed requests and versions seen.

    bash bench/setup_bentoml.sh && bash bench/setup_mlflow.sh     # peers in bench/.venv-*
    .venv/bin/python bench/serving.py               # writes bench/out/serving.json, RESULTS.md

A modelyard feature the server lacks (a flag, a route) is reported as such and its row is
marked "not run"; the peers are measured either way.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _load
import _serving_report as report
from _common import REPO, machine, percentiles, write_section
from _procs import Unavailable, free_port, post, running, tree_cpu_seconds

BENCH = Path(__file__).resolve().parent
BENTOML_VENV = BENCH / ".venv-bentoml"
MLFLOW_VENV = BENCH / ".venv-mlflow"
FRIENDLY = "/v1/models/lr/predict"
OIP = "/v2/models/lr/infer"
NAMES = [f"f{i}" for i in range(20)]
QUIET = {"BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


# -- model and workspace ---------------------------------------------------------------------
def build(folder: Path) -> dict[str, Any]:
    """Workspace with lr versions 1 and 2 (alias production -> 1), the pickle, request rows."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from modelyard.workspace import Workspace

    x, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    frame = pd.DataFrame(x, columns=NAMES)
    ws = Workspace.init(folder / "ws")
    models = [LogisticRegression(max_iter=500), LogisticRegression(C=0.05, max_iter=500)]
    for model in models:
        with ws.start_run("bench-serving", params={"C": model.C}) as run:
            model.fit(frame, y)
            logged = ws.registry.log_model(run, model, input_example=frame.head(20))
        ws.registry.register("lr", logged)
    ws.registry.set_alias("lr", "production", 1)
    ws.close()
    pkl = folder / "lr.pkl"
    pkl.write_bytes(pickle.dumps(models[0]))
    rows = x[:500]
    return {
        "workspace": folder / "ws",
        "pickle": pkl,
        "rows": rows,
        "expected": [float(p) for p in models[0].predict_proba(frame.head(1))[0]],
    }


def bodies(kind: str, rows: Any) -> list[bytes]:
    """One request body per row, in the shape each server's documented API takes."""
    out = []
    for row in rows:
        values = [float(v) for v in row]
        record = dict(zip(NAMES, values, strict=True))
        payload: Any = {
            "friendly": record,
            "oip": {
                "inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP64", "data": values}]
            },
            "bentoml": {"rows": [values]},
            "mlflow": {"dataframe_records": [record]},
        }[kind]
        out.append(json.dumps(payload, separators=(",", ":")).encode())
    return out


def probabilities(kind: str, answer: Any) -> list[float] | None:
    """The class probabilities in an answer, or None where the shape is not known."""
    if kind == "friendly":
        pred = answer.get("prediction", {})
        return [pred.get("probability_0"), pred.get("probability_1")]
    if kind == "bentoml":
        return list(answer[0])
    if kind == "mlflow":
        return list(answer["predictions"][0])
    if kind == "oip":
        outs = {o.get("name"): o.get("data") for o in answer.get("outputs", [])}
        if "probability_0" in outs and "probability_1" in outs:
            return [outs["probability_0"][0], outs["probability_1"][0]]
    return None


# -- measurements ----------------------------------------------------------------------------
def check_answer(port: int, path: str, kind: str, body: bytes, expected: list[float]) -> str:
    """'same' when the server answers the expected probabilities; raise when it fails."""
    status, raw = post(port, path, body)
    if status != 200:
        raise Unavailable(
            f"POST {path} answered HTTP {status}: {raw[:160].decode(errors='replace')}"
        )
    got = probabilities(kind, json.loads(raw))
    if got is None:
        return "answer shape not checked"
    diff = max(abs(a - b) for a, b in zip(got, expected, strict=True))
    return "same" if diff < 1e-9 else f"differs by {diff:.3g}"


def c1(port: int, path: str, reqs: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    res = _load.sequential(port, path, reqs, args.requests, args.warmup)
    if not res.latencies:
        raise Unavailable(
            f"every request to {path} failed: {dict(res.statuses)} {dict(res.errors)}"
        )
    return {
        "requests": args.requests,
        **percentiles(res.latencies),
        "failures": res.failures,
        "statuses": dict(res.statuses),
        "errors": dict(res.errors),
    }


def c32(
    proc: subprocess.Popen[bytes], port: int, path: str, reqs: list[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    """wrk warm-up, then ``args.rounds`` timed runs on fresh connections; the best run.

    wrk's threads start ``args.stagger`` s apart (see ``_load.wrk``) so that the workers of a
    multi-process server can share the connections; how they share them still changes from
    run to run, so every server gets the same number of runs and keeps its best.
    """
    load_args = {"threads": args.wrk_threads, "stagger": args.stagger}
    _load.wrk(port, path, reqs[:100], args.concurrency, args.warmup_seconds, **load_args)
    runs = []
    for _ in range(args.rounds):
        load = os.getloadavg()[0]
        cpu0 = tree_cpu_seconds(proc.pid)
        res = _load.wrk(port, path, reqs[:100], args.concurrency, args.seconds, **load_args)
        cpu1 = tree_cpu_seconds(proc.pid)
        secs = res["seconds"]
        per = sorted((cpu1[p] - cpu0.get(p, 0.0) for p in cpu1), reverse=True)
        ok = res["requests"] - res["status"]
        runs.append(
            {
                "requests": res["requests"],
                "ok_rps": round(ok / secs, 1),
                "p50_ms": round(res["p50_us"] / 1000, 3),
                "p99_ms": round(res["p99_us"] / 1000, 3),
                "non_2xx": res["status"],
                "socket_errors": res["socket_errors"],
                "server_cores": round(sum(per) / secs, 2),
                "server_cores_by_process": [round(c / secs, 2) for c in per if c / secs >= 0.01],
                "wrk_cores": round(res["wrk_cpu_s"] / secs, 2),
                "load_1min": round(load, 2),
                "wrk": res,
            }
        )
    best = max(runs, key=lambda r: r["ok_rps"])
    failures = {k: sum(r[k] for r in runs) for k in ("non_2xx", "socket_errors")}
    failures["requests_all_runs"] = sum(r["requests"] for r in runs)
    return {**best, **failures, "runs_ok_rps": [r["ok_rps"] for r in runs], "runs": runs}


def serve_flags() -> str:
    exe = Path(sys.executable).with_name("modelyard")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    res = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, env=env)
    return res.stdout + res.stderr


def modelyard_cmd(port: int, built: dict[str, Any], *flags: str) -> list[str]:
    exe = Path(sys.executable).with_name("modelyard")
    return [
        str(exe),
        "serve",
        "lr@production",
        "--port",
        str(port),
        "-w",
        str(built["workspace"]),
        *flags,
    ]


def missing(help_text: str, *flags: str) -> list[str]:
    return [f for f in flags if f not in help_text]


def run_modelyard(
    built: dict[str, Any], tmp: Path, args: argparse.Namespace, out: dict[str, Any]
) -> None:
    help_text = serve_flags()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    friendly, oip = bodies("friendly", built["rows"]), bodies("oip", built["rows"])
    runs = out["modelyard"]

    port = free_port()
    log = tmp / "modelyard.log"
    try:
        with running(modelyard_cmd(port, built), port, "/readyz", log, env=env) as proc:
            check = check_answer(port, FRIENDLY, "friendly", friendly[0], built["expected"])
            runs["check_friendly"] = check
            runs["c1_friendly"] = c1(port, FRIENDLY, friendly, args)
            try:
                runs["check_oip"] = check_answer(port, OIP, "oip", oip[0], built["expected"])
                runs["c1_oip"] = c1(port, OIP, oip, args)
            except Unavailable as exc:
                runs["c1_oip"] = {"not_run": str(exc)}
            runs["c32_nobatch_friendly"] = c32(proc, port, FRIENDLY, friendly, args)
    except Unavailable as exc:
        failed = {"not_run": f"the server failed: {exc}"}
        for key in ("c1_friendly", "c1_oip", "c32_nobatch_friendly"):
            runs.setdefault(key, failed)

    runs["batch"] = []
    lacking = missing(help_text, "--max-batch-size", "--max-latency-ms")
    for workers in args.workers:
        row: dict[str, Any] = {"workers": workers}
        runs["batch"].append(row)
        if lacking:
            row["not_run"] = f"modelyard serve has no {' / '.join(lacking)} flag yet"
            continue
        flags = ["--max-batch-size", str(args.max_batch_size)]
        flags += ["--max-latency-ms", str(args.max_latency_ms)]
        if workers != 1:
            if missing(help_text, "--workers"):
                row["not_run"] = "modelyard serve has no --workers flag yet"
                continue
            flags += ["--workers", str(workers)]
        row["flags"] = " ".join(flags)
        port = free_port()
        log = tmp / f"modelyard-batch-{workers}.log"
        try:
            with running(modelyard_cmd(port, built, *flags), port, "/readyz", log, env=env) as p:
                row["c1_friendly"] = c1(port, FRIENDLY, friendly, args)
                row["c32_friendly"] = c32(p, port, FRIENDLY, friendly, args)
                if "not_run" in runs["c1_oip"]:
                    row["c32_oip"] = runs["c1_oip"]
                else:
                    row["c32_oip"] = c32(p, port, OIP, oip, args)
        except Unavailable as exc:
            row["not_run"] = f"the server did not start: {exc}"

    lacking = missing(help_text, "--poll-interval")
    if lacking:
        runs["hot_swap"] = {"not_run": "modelyard serve has no --poll-interval flag yet"}
    else:
        port = free_port()
        cmd = modelyard_cmd(port, built, "--poll-interval", str(args.poll_interval))
        try:
            with running(cmd, port, "/readyz", tmp / "modelyard-swap.log", env=env):
                runs["hot_swap"] = hot_swap(port, built, friendly, args)
        except Unavailable as exc:
            runs["hot_swap"] = {"not_run": f"the server failed: {exc}"}


def hot_swap(
    port: int, built: dict[str, Any], reqs: list[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    """Load at c=8 while the alias moves 1 -> 2 -> 1 ... every ``args.move_every`` seconds."""
    from modelyard.workspace import Workspace

    moves: list[tuple[float, int]] = []
    failed: list[str] = []

    def mover() -> None:
        ws = Workspace(built["workspace"])
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


def peer_configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    configs = []
    for w in args.workers:
        configs.append(
            {
                "peer": "bentoml",
                "workers": w,
                "max_batch_size": args.max_batch_size,
                "max_latency_ms": 60000,
            }
        )
    configs.append(
        {
            "peer": "bentoml",
            "workers": max(args.workers),
            "max_batch_size": args.max_batch_size,
            "max_latency_ms": args.max_latency_ms,
        }
    )
    for w in args.workers:
        configs.append({"peer": "mlflow", "workers": w})
    return configs


def run_peer(
    cfg: dict[str, Any], built: dict[str, Any], tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, **QUIET}
    if cfg["peer"] == "bentoml":
        env |= {
            "BENTOML_HOME": str(tmp / "bentoml-home"),
            "BENCH_MODEL_PATH": str(built["pickle"]),
            "BENCH_WORKERS": str(cfg["workers"]),
            "BENCH_MAX_BATCH_SIZE": str(cfg["max_batch_size"]),
            "BENCH_MAX_LATENCY_MS": str(cfg["max_latency_ms"]),
        }
        cmd = [
            str(BENTOML_VENV / "bin" / "bentoml"),
            "serve",
            "_bentoml_service:LogisticRegression",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        kind, path, health, cwd = "bentoml", "/predict", "/readyz", BENCH
    else:
        # mlflow models serve starts `uvicorn` from PATH: the venv's bin, as if activated.
        env["PATH"] = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        cmd = [
            str(MLFLOW_VENV / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(built["mlflow_model"]),
            "--env-manager",
            "local",
            "-w",
            str(cfg["workers"]),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        kind, path, health, cwd = "mlflow", "/invocations", "/ping", REPO
    reqs = bodies(kind, built["rows"])
    label = "-".join(f"{v}" for v in cfg.values())
    result: dict[str, Any] = {"config": cfg, "command": " ".join(cmd[1:3])}
    with running(cmd, port, health, tmp / f"{label}.log", env=env, cwd=cwd) as proc:
        result["check"] = check_answer(port, path, kind, reqs[0], built["expected"])
        result["c1"] = c1(port, path, reqs, args)
        result["c32"] = c32(proc, port, path, reqs, args)
    return result


def prepare_peers(built: dict[str, Any], tmp: Path) -> dict[str, str]:
    """Check the peer venvs, write the MLflow model folder; the peers' versions."""
    versions = {}
    for venv, setup, mod in (
        (BENTOML_VENV, "setup_bentoml.sh", "bentoml"),
        (MLFLOW_VENV, "setup_mlflow.sh", "mlflow"),
    ):
        code = f"import {mod}, sklearn; print({mod}.__version__, sklearn.__version__)"
        res = subprocess.run(
            [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True
        )
        if res.returncode != 0:
            raise SystemExit(f"{venv.name} is missing or broken: run 'bash bench/{setup}' first")
        version, sklearn = res.stdout.split()
        versions[mod] = version
        versions[f"scikit_learn_{mod}_venv"] = sklearn
    built["mlflow_model"] = tmp / "mlflow-model"
    saved = subprocess.run(
        [
            str(MLFLOW_VENV / "bin" / "python"),
            str(BENCH / "_mlflow_serving_model.py"),
            str(built["pickle"]),
            str(built["mlflow_model"]),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **QUIET},
    )
    if saved.returncode != 0:
        raise SystemExit(f"saving the MLflow model failed: {saved.stderr.strip()[-800:]}")
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="timed requests at c=1")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests before c=1")
    parser.add_argument("--seconds", type=float, default=15, help="length of the c=32 run")
    parser.add_argument("--warmup-seconds", type=float, default=3, help="wrk warm-up before it")
    parser.add_argument("--rounds", type=int, default=2, help="c=32 runs per server; best kept")
    parser.add_argument("--wrk-threads", type=int, default=4)
    parser.add_argument("--stagger", type=float, default=0.05, help="s between wrk threads")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-latency-ms", type=int, default=2)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="peer worker counts to try"
    )
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--swap-concurrency", type=int, default=8)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--move-every", type=float, default=1.0)
    parser.add_argument("--skip", choices=["modelyard", "peers"], action="append", default=[])
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    args = parser.parse_args()
    if _load.wrk_available() is None:
        raise SystemExit(
            "wrk is not installed: run 'bash bench/setup_bentoml.sh' (apt-get install wrk)"
        )
    # A SIGTERM runs the finally blocks too, so no server outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    out: dict[str, Any] = {
        "settings": vars(args) | {"skip": args.skip},
        "modelyard": {},
        "peers": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        built = build(tmp)
        versions = {} if "peers" in args.skip else prepare_peers(built, tmp)
        out["machine"] = machine(**versions, wrk=_wrk_version())
        out["load_1min_start"] = round(os.getloadavg()[0], 2)
        if "modelyard" not in args.skip:
            run_modelyard(built, tmp, args, out)
        if "peers" not in args.skip:
            for cfg in peer_configs(args):
                print(f"measuring {cfg} ...", file=sys.stderr)
                try:
                    out["peers"].append(run_peer(cfg, built, tmp, args))
                except Unavailable as exc:
                    out["peers"].append({"config": cfg, "not_run": str(exc)})
        out["load_1min_end"] = round(os.getloadavg()[0], 2)

    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / "serving.json").write_text(json.dumps(out, indent=2, default=str))
    text = report.section(out)
    print(text)
    if not args.no_write:
        write_section(BENCH / "RESULTS.md", report.HEADER, text)


def _wrk_version() -> str:
    res = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (res.stdout + res.stderr).split("[")[0].replace("wrk", "").strip() or "unknown"


if __name__ == "__main__":
    main()
