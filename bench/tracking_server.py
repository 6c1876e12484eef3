"""The team server against ``mlflow server``: the ``mlflow`` client on both, one PostgreSQL.

    bash bench/setup_mlflow.sh      # once: MLflow (+ psycopg) in its own venv, bench/.venv-mlflow
    .venv/bin/python bench/tracking_server.py [--rounds 3] [--threads 4] [--workers 2] [--write]

What it measures (issue 29): through each server, with the same ``MlflowClient`` code
(bench/_ts_client.py, run by bench/.venv-mlflow's python with the server's URL):

- runs/s: 1,000 runs, each ``create_run`` + one ``log_batch`` (10 params + 20 metrics) +
  ``set_terminated``, on ``--threads`` client threads, and again (fewer runs) on one thread;
- metric steps/s: one run, 10,000 steps of one metric in ``log_batch`` calls of 1,000
  (MLflow's limit), and 500 single ``log_metric`` calls, reported per step;
- search: ``search_runs([exp], "metrics.m0 > 0.5", order_by=["metrics.m1 DESC"],
  max_results=100)`` over an experiment of 10,000 runs, client-side wall time, checked
  against the answer computed from the values the runs were given.

Why it is written this way: a tracking server is shared, so both servers run side by side
on the same local PostgreSQL, each in a database this script creates (and drops after),
with the same number of worker processes; the client is MLflow's own on both sides, so the
numbers compare the servers and not two clients. One synchronous client mostly measures
its own round trips, hence several client threads (the 1-thread rows are kept too). The
machine is shared between the client, the servers and PostgreSQL, so the sides alternate
round by round and the tables give the median and the best round, beside the 1-minute load
average. Peers never enter modelyard's venv: MLflow runs from bench/.venv-mlflow. And
modelyard's own client (bench/_ts_own_client.py, in modelyard's venv): runs/s through
``ws.start_run`` with metadata.url the server's database itself, against the same with
metadata.url the server's URL.
Writes bench/out/tracking-server.json; ``--write`` also replaces this benchmark's section
of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

from _common import machine, write_section
from _procs import free_port, running

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_BIN = Path(sys.executable).parent
PG = "postgres@127.0.0.1:5432"
ADMIN_URL = f"postgresql://{PG}/test"
FILTER = "metrics.m0 > 0.5"
ORDER_BY = "metrics.m1 DESC"
TARGET_RATIO = 10.0
TARGET_SEARCH_MS = 50.0
HEADER = "## Team server vs `mlflow server` (issue 29)"
SIDES = ("mlflow", "modelyard")
TARGET_OWN = 2.0  # own client through the server: at most this many times slower
OWN_MODES = ("direct", "server")


def create_databases(names: list[str], created: list[str]) -> None:
    """CREATE DATABASE each of ``names``; ``created`` collects those made, for the drop."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
            created.append(name)


def drop_databases(created: list[str]) -> None:
    """Drop the databases this run created, and only those."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze(db: str) -> float:
    """ANALYZE one of this run's databases; its seconds. The PostgreSQL here runs with
    autovacuum off, so without this the planner would see a freshly filled database as
    empty, which a production server (autovacuum on) would not after 10,000 runs."""
    t = time.perf_counter()
    with psycopg.connect(f"postgresql://{PG}/{db}", autocommit=True) as conn:
        conn.execute("ANALYZE")
    return time.perf_counter() - t


def pg_setting(name: str) -> str:
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    return str(row[0]) if row else ""


def clean_env() -> dict[str, str]:
    """This shell's environment without MODELYARD_* and MLFLOW_* settings of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "MLFLOW_"))}


def start_mlflow(
    stack: ExitStack, args: argparse.Namespace, db: str, folder: Path
) -> tuple[int, int, list[str]]:
    port = free_port()
    cmd = [
        str(args.mlflow_python.parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"postgresql+psycopg://{PG}/{db}",
        "--artifacts-destination",
        str(folder / "mlflow-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    ]
    proc = stack.enter_context(
        running(cmd, port, "/health", folder / "mlflow-server.log", env=clean_env(), cwd=folder)
    )
    return port, proc.pid, cmd


def start_modelyard(
    stack: ExitStack, args: argparse.Namespace, db: str, folder: Path
) -> tuple[int, int, list[str]]:
    """``modelyard server`` in a workspace made by ``modelyard init`` whose metadata store is
    ``db``."""
    ws = folder / "workspace"
    subprocess.run([str(VENV_BIN / "modelyard"), "init", str(ws)], check=True, capture_output=True)
    env = {**clean_env(), "MODELYARD_METADATA_URL": f"postgresql+psycopg://{PG}/{db}"}
    port = free_port()
    cmd = [str(VENV_BIN / "modelyard"), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(args.workers)]
    log = folder / "modelyard-server.log"
    proc = stack.enter_context(
        running(cmd, port, "/readyz", log, env=env, cwd=ws, ready_s=args.ready_s)
    )
    return port, proc.pid, cmd


def own_client(args: argparse.Namespace, mode: str, url: str, threads: int) -> dict[str, Any]:
    """One bench/_ts_own_client.py process (modelyard's python): its JSON."""
    cfg = {
        "mode": mode,
        "url": url,
        "runs": args.own_runs,
        "threads": threads,
        "experiment": f"own-{mode}",
    }
    proc = subprocess.run(
        [sys.executable, str(BENCH / "_ts_own_client.py"), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        cwd=BENCH,
        env=clean_env(),
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def client(args: argparse.Namespace, side: str, port: int, pid: int, **cfg: Any) -> dict:
    """One bench/_ts_client.py process against the server on ``port``; its JSON."""
    settings = {
        "side": side,
        "uri": f"http://127.0.0.1:{port}",
        "server_pid": pid,
        "seed": args.seed,
        "threads": args.threads,
        "runs": args.runs,
        "runs_1thread": args.runs_1thread,
        "params": 10,
        "metrics": 20,
        "warmup": 5,
        "steps": args.steps,
        "batch": args.batch,
        "single": args.single,
        "search_runs": args.search_runs,
        "repeats": args.repeats,
        "filter": FILTER,
        "order_by": ORDER_BY,
        "max_results": args.max_results,
        **cfg,
    }
    env = {**clean_env(), "MLFLOW_TRACKING_URI": settings["uri"]}
    proc = subprocess.run(
        [str(args.mlflow_python), str(BENCH / "_ts_client.py"), json.dumps(settings)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        cwd=BENCH,
        env=env,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# What each table row reads from a round's JSON, and whether bigger is better.
ROWS = [
    ("runs", "runs_per_s", "runs/s, {runs:,} runs x (10 params + 20 metrics), {threads} threads"),
    ("runs_1thread", "runs_per_s", "runs/s, {runs:,} runs, 1 thread"),
    ("steps", "steps_per_s", "metric steps/s, {steps:,} steps, log_batch of {batch:,}"),
    ("single", "steps_per_s", "metric steps/s, {steps:,} single log_metric calls"),
    ("search", "median_ms", "search {search_runs:,} runs, median ms"),
    ("search", "best_ms", "search {search_runs:,} runs, best ms"),
]
TARGETED = {"runs", "steps"}  # the ratio targets; search has its own


def summarize(rounds: dict[str, list[dict]]) -> list[dict[str, Any]]:
    out = []
    for part, field, label in ROWS:
        values = {side: [r[part][field] for r in rounds[side]] for side in SIDES}
        lower_better = field.endswith("_ms")
        pick = min if lower_better else max
        my, ml = values["modelyard"], values["mlflow"]
        row: dict[str, Any] = {
            "metric": label.format(**rounds["modelyard"][0][part]),
            "part": part,
            "field": field,
            "modelyard_rounds": my,
            "mlflow_rounds": ml,
            "modelyard": statistics.median(my),
            "modelyard_best": pick(my),
            "mlflow": statistics.median(ml),
            "mlflow_best": pick(ml),
        }
        if lower_better:
            row["ratio"] = row["mlflow"] / row["modelyard"]
        else:
            row["ratio"] = row["modelyard"] / row["mlflow"]
        if field == "median_ms":
            row["target"] = f"< {TARGET_SEARCH_MS:g} ms"
            row["met"] = row["modelyard"] < TARGET_SEARCH_MS
        elif part in TARGETED:
            row["target"] = f">= {TARGET_RATIO:g}x MLflow"
            row["met"] = row["ratio"] >= TARGET_RATIO
        else:
            row["target"], row["met"] = "", None
        out.append(row)
    return out


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| metric | modelyard server | mlflow server | ratio | target | met? |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        speed = "faster" if r["field"].endswith("_ms") else ""
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(
            f"| {r['metric']} | {fmt(r['modelyard'])} (best {fmt(r['modelyard_best'])}) "
            f"| {fmt(r['mlflow'])} (best {fmt(r['mlflow_best'])}) "
            f"| {r['ratio']:.1f}x {speed}".rstrip()
            + f" | {r['target']} | {met} |"
        )
    return "\n".join(lines)


def own_rows(own: dict[str, dict[int, list[dict]]]) -> list[dict[str, Any]]:
    """modelyard's own client: runs/s direct to PostgreSQL and through the team server."""
    out = []
    for threads in sorted(own["direct"]):
        direct = [r["runs_per_s"] for r in own["direct"][threads]]
        server = [r["runs_per_s"] for r in own["server"][threads]]
        slower = statistics.median(direct) / statistics.median(server)
        out.append(
            {
                "threads": threads,
                "direct": statistics.median(direct),
                "direct_best": max(direct),
                "server": statistics.median(server),
                "server_best": max(server),
                "slower": slower,
                "met": slower <= TARGET_OWN,
                "runs": own["direct"][threads][0]["runs"],
            }
        )
    return out


def own_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| modelyard's own client, runs/s | direct to PostgreSQL | through the team server "
        "| through / direct | target | met? |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['runs']:,} runs x (10 params + 20 metrics), {r['threads']} thread"
            f"{'s' if r['threads'] > 1 else ''} | {fmt(r['direct'])} (best "
            f"{fmt(r['direct_best'])}) | {fmt(r['server'])} (best {fmt(r['server_best'])}) "
            f"| {r['slower']:.2f}x slower | within {TARGET_OWN:g}x | "
            f"{'yes' if r['met'] else '**no**'} |"
        )
    return "\n".join(lines)


def misses(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if r["met"] is False:
            if r["field"] == "median_ms":
                out.append(
                    f"- Missed: search over {r['metric'].split()[1]} runs took "
                    f"{fmt(r['modelyard'])} ms (median), over the {TARGET_SEARCH_MS:g} ms target."
                )
            else:
                out.append(
                    f"- Missed: {r['metric']}: modelyard's server {fmt(r['modelyard'])} against "
                    f"MLflow's {fmt(r['mlflow'])}, {r['ratio']:.1f}x where the target is "
                    f"{TARGET_RATIO:g}x."
                )
    return out


def checks(rounds: dict[str, list[dict]], populate: dict[str, dict]) -> list[str]:
    """Everything that went wrong: failed calls, values not stored, wrong search answers."""
    out = []
    for side in SIDES:
        if populate[side]["errors"]:
            out.append(f"{side} populate: {populate[side]['errors']} failed calls")
        for k, r in enumerate(rounds[side], 1):
            for part, res in r.items():
                if res.get("errors"):
                    out.append(f"{side} round {k} {part}: {res['errors']} failed calls")
            for part in ("runs", "runs_1thread"):
                if r[part]["stored"] != {"params": 10, "metrics": 20, "status": "FINISHED"}:
                    out.append(f"{side} round {k} {part}: stored {r[part]['stored']}")
            if r["steps"]["stored"] != r["steps"]["steps"] or not r["steps"]["stored_steps_ok"]:
                out.append(f"{side} round {k} steps: stored {r['steps']['stored']} points")
            if r["single"]["stored"] != r["single"]["steps"]:
                out.append(f"{side} round {k} single: stored {r['single']['stored']} points")
            s = r["search"]
            if not (s["correct"] and s["all_match_filter"]):
                out.append(f"{side} round {k} search: wrong answer, top {s['top']}")
    return out


def section(report: dict[str, Any]) -> str:
    a = report["settings"]
    m = report["machine"]
    load = report["load_1m"]
    pop = report["populate"]
    analyzed = (
        "then `ANALYZE` on both databases (this PostgreSQL runs with autovacuum "
        f"{m['autovacuum']}; a production server's autovacuum would have analyzed them)"
        if a["analyze"]
        else "not analyzed (`--no-analyze`; autovacuum " + m["autovacuum"] + ")"
    )
    lines = [
        HEADER,
        "",
        "```",
        "bash bench/setup_mlflow.sh      # MLflow 3.17.2 + psycopg in bench/.venv-mlflow",
        report["command"],
        "```",
        "",
        f"Machine: {m['nproc']} cores shared by the client, both servers and PostgreSQL "
        f"{m['postgresql']} "
        f"(127.0.0.1), {m['platform']}, Python {m['python']}; modelyard at "
        f"`{m['modelyard_commit']}`{' (dirty tree)' if m['modelyard_tree_dirty'] else ''}, "
        f"mlflow {m['mlflow']}. 1-minute load average "
        + " -> ".join(f"{x:.2f}" for x in load)
        + f" over the {len(load) - 1} side-rounds.",
        "",
        f"`modelyard server --workers {a['workers']}` and `mlflow server --workers "
        f"{a['workers']}` (uvicorn), each on a fresh database of its own on the same "
        "PostgreSQL, both up for the whole run. Client: `MlflowClient` from "
        "bench/.venv-mlflow on both sides (bench/_ts_client.py, no retries), "
        f"{a['threads']} client threads unless a row says 1. {a['rounds']} rounds, sides "
        "alternating (mlflow, modelyard, mlflow, …); median of rounds (best round in "
        "brackets). Before the rounds each side's search experiment was filled with "
        f"{a['search_runs']:,} runs (create_run + log_batch, {a['threads']} threads; mlflow "
        f"{pop['mlflow']['runs_per_s']:.0f} runs/s, modelyard "
        f"{pop['modelyard']['runs_per_s']:.0f} runs/s), {analyzed}. Search: `search_runs([exp], "
        f'"{FILTER}", order_by=["{ORDER_BY}"], max_results={a["max_results"]})`, '
        f"{a['repeats']} calls a round after 2 warm-up calls, client wall time. Raw numbers: "
        "`bench/out/tracking-server.json`.",
        "",
    ]
    lines += [table(report["rows"]), ""]
    cpu = report["server_cpu_ms"]
    lines += [
        "Server CPU (its process tree, median round): "
        + "; ".join(
            f"{label}: modelyard {cpu['modelyard'][part]:.2f} ms, mlflow "
            f"{cpu['mlflow'][part]:.2f} ms"
            for part, label in (
                ("runs", "per run"),
                ("steps", "per log_batch step"),
                ("single", "per log_metric call"),
                ("search", "per search"),
            )
        )
        + ". PostgreSQL's own CPU is not in these figures.",
        "",
        _client_bound(report),
        "",
    ]
    problems = report["problems"]
    lines += [
        "Checks: "
        + (
            "every call succeeded; every run stored its 10 params and 20 metrics and ended "
            "FINISHED; every step was stored; both servers' search answers matched the "
            "top 100 computed from the logged values."
            if not problems
            else "problems seen: " + "; ".join(problems) + "."
        ),
        "",
    ]
    lines += [
        "modelyard's own client (bench/_ts_own_client.py, modelyard's venv): "
        f"{a['own_runs']:,} runs through `ws.start_run` (params at start, 20 metrics, end), "
        "once with `metadata.url` the modelyard server's PostgreSQL database itself and once "
        "with it the server's URL, the two alternating in each round.",
        "",
        own_table(report["own_rows"]),
        "",
    ]
    missed = misses(report["rows"]) + [
        f"- Missed: modelyard's own client through the server is {r['slower']:.2f}x slower "
        f"than direct with {r['threads']} thread(s), over the {TARGET_OWN:g}x target."
        for r in report["own_rows"]
        if not r["met"]
    ]
    lines += missed or ["Every target measured here was met."]
    return "\n".join(lines) + "\n"


def _client_bound(report: dict[str, Any]) -> str:
    """Why a runs/s ratio has a ceiling here: the same MLflow client's own CPU per run."""
    client = {
        side: statistics.median(
            r["runs"]["client_cpu_s"] / r["runs"]["runs"] * 1000 for r in report["rounds"][side]
        )
        for side in SIDES
    }
    server = report["server_cpu_ms"]
    ceiling = (client["mlflow"] + server["mlflow"]["runs"]) / client["modelyard"]
    return (
        f"The client is the same on both sides and costs about as much CPU per run as "
        f"modelyard's server: {client['modelyard']:.1f} ms per run against modelyard, "
        f"{client['mlflow']:.1f} ms against MLflow (median round), on the same 2 cores as "
        f"the servers and PostgreSQL. Even a server that cost nothing would make runs/s at "
        f"most ({client['mlflow']:.1f} + {server['mlflow']['runs']:.1f}) / "
        f"{client['modelyard']:.1f} = {ceiling:.1f}x MLflow's here, so the 10x target cannot "
        "be met on this machine with the MLflow client in the loop; the server CPU figures "
        "above compare the servers alone."
    )


def per_unit_cpu(rounds: list[dict]) -> dict[str, float]:
    """Median server CPU in ms per run, per step, per call and per search."""
    units = {"runs": "runs", "steps": "steps", "single": "steps", "search": "repeats"}
    return {
        part: statistics.median(r[part]["server_cpu_s"] / r[part][n] * 1000 for r in rounds)
        for part, n in units.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="worker processes of each server")
    p.add_argument("--threads", type=int, default=4, help="client threads for runs/s")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--runs-1thread", type=int, default=200, help="runs of the 1-thread row")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000, help="steps per log_batch call")
    p.add_argument("--single", type=int, default=500, help="single log_metric calls")
    p.add_argument("--search-runs", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=20, help="timed searches per round")
    p.add_argument("--max-results", type=int, default=100)
    p.add_argument("--own-runs", type=int, default=300, help="runs of the own-client rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ready-s", type=float, default=30.0, help="wait for modelyard server")
    p.add_argument("--mlflow-python", type=Path, default=BENCH / ".venv-mlflow/bin/python")
    p.add_argument("--out", type=Path, default=BENCH / "out/tracking-server.json")
    p.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="skip ANALYZE of both databases after filling them (autovacuum may be off)",
    )
    p.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    p.add_argument("--report", type=Path, help="rewrite the section from this JSON, no run")
    args = p.parse_args(argv)
    if args.report is not None:
        text = section(json.loads(args.report.read_text()))
        print(text)
        if args.write:
            write_section(BENCH / "RESULTS.md", HEADER, text)
        return 0
    if not args.mlflow_python.exists():
        print(f"{args.mlflow_python} not found; run 'bash bench/setup_mlflow.sh'", file=sys.stderr)
        return 2
    mlflow_version = subprocess.run(
        [str(args.mlflow_python), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    suffix = secrets.token_hex(4)
    dbs = {side: f"bench_ts_{side}_{suffix}" for side in SIDES}
    created: list[str] = []
    load = [os.getloadavg()[0]]
    rounds: dict[str, list[dict]] = {side: [] for side in SIDES}
    populate: dict[str, dict] = {}
    servers: dict[str, dict[str, Any]] = {}
    own: dict[str, dict[int, list[dict]]] = {mode: {} for mode in OWN_MODES}
    t_all = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ts-") as tmp, ExitStack() as stack:
            folder = Path(tmp)
            create_databases(list(dbs.values()), created)
            for side in SIDES:
                (folder / side).mkdir()
            port, pid, cmd = start_mlflow(stack, args, dbs["mlflow"], folder / "mlflow")
            servers["mlflow"] = {"port": port, "pid": pid, "cmd": cmd}
            port, pid, cmd = start_modelyard(stack, args, dbs["modelyard"], folder / "modelyard")
            servers["modelyard"] = {"port": port, "pid": pid, "cmd": cmd}
            for side in SIDES:
                s = servers[side]
                print(f"{side}: populate {args.search_runs} runs", file=sys.stderr)
                populate[side] = client(args, side, s["port"], s["pid"], parts=["populate"])[
                    "populate"
                ]
                if args.analyze:
                    populate[side]["analyze_s"] = analyze(dbs[side])
            parts = ["runs", "runs_1thread", "steps", "single", "search"]
            for k in range(args.rounds):
                for side in SIDES:
                    s = servers[side]
                    print(f"round {k + 1}: {side} (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
                    rounds[side].append(
                        client(args, side, s["port"], s["pid"], parts=parts, round=k + 1)
                    )
                    load.append(os.getloadavg()[0])
                urls = {
                    "direct": f"postgresql+psycopg://{PG}/{dbs['modelyard']}",
                    "server": f"http://127.0.0.1:{servers['modelyard']['port']}",
                }
                for threads in sorted({1, args.threads}):
                    for mode in OWN_MODES if k % 2 == 0 else OWN_MODES[::-1]:
                        print(
                            f"round {k + 1}: own client {mode}, {threads} thread(s)",
                            file=sys.stderr,
                        )
                        own[mode].setdefault(threads, []).append(
                            own_client(args, mode, urls[mode], threads)
                        )
    finally:
        if created:
            drop_databases(created)

    rows = summarize(rounds)
    problems = checks(rounds, populate) + [
        f"own client {mode}, {threads} thread(s): {r['done']} of {r['runs']} runs, "
        f"stored {r['stored']}"
        for mode, by_threads in own.items()
        for threads, results in by_threads.items()
        for r in results
        if r["done"] != r["runs"]
        or r["stored"] != {"params": 10, "metrics": 20, "status": "finished"}
    ]
    report = {
        "command": " ".join([".venv/bin/python", "bench/tracking_server.py", *sys.argv[1:]]),
        "machine": machine(
            mlflow=mlflow_version,
            postgresql=pg_setting("server_version"),
            autovacuum=pg_setting("autovacuum"),
        ),
        "load_1m": load,
        "seconds": time.perf_counter() - t_all,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "servers": {side: {"cmd": s["cmd"]} for side, s in servers.items()},
        "own": own,
        "own_rows": own_rows(own),
        "databases": created,
        "populate": populate,
        "rounds": rounds,
        "server_cpu_ms": {side: per_unit_cpu(rounds[side]) for side in SIDES},
        "rows": rows,
        "problems": problems,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = section(report)
    print(text)
    if args.write:
        write_section(BENCH / "RESULTS.md", HEADER, text)
        print(f"wrote {args.out} and the section of {BENCH / 'RESULTS.md'}")
    else:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
