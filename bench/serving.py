"""Serving: modelyard against a bare ASGI app (the floor), BentoML and MLflow, in one run.

A LogisticRegression on 20 float features (scikit-learn's ``make_classification``, seed 0,
5,000 rows) is registered in a temporary modelyard workspace as ``lr`` (versions 1 and 2)
and pickled for the other sides, which load that very pickle: the bare app
(``_bare_app.py``: one async route, orjson, ``predict_proba`` inline, same uvicorn) and the
peers in their own venvs. The sides (``_serving_sides.all_sides``):

- bare app, 1 and 2 processes;
- ``modelyard serve lr@production`` with its defaults (prediction log and one log line per
  request on), with ``--max-batch-size 1`` (unbatched) and with ``--max-batch-size 64
  --max-latency-ms 2`` (batched), 1 process; unbatched and batched with ``--workers 2``;
- BentoML (``workers=1``/``2``, batchable, max 64) and MLflow (``-w 1``/``2``) when their
  venvs exist (``bash bench/setup_bentoml.sh``, ``setup_mlflow.sh``); skipped with a note
  otherwise.

Every side runs at once, each its own subprocess on 127.0.0.1, stopped (with every process
it started) at the end, on error too. Then ``--rounds`` rounds: in each, every side in turn
(the order rotated by one each round, so no side always follows the same one) runs, for
each endpoint, c=1 (``--requests`` on one keep-alive ``http.client`` connection after
``--warmup``) and c=32 (``wrk`` for ``--seconds`` after ``--warmup-seconds``), and with
``--pin both`` (default) a second c=32 run with wrk on a core of its own (the bare app's and
modelyard's friendly routes). Reported per side: median and best over the rounds, and the
ratios to the bare app that issue 22 sets as targets. Last, a hot swap under c=8 load.

    .venv/bin/python bench/serving.py                       # writes bench/out/serving.json
    .venv/bin/python bench/serving.py --quick --only bare,modelyard --no-write

A modelyard feature the server lacks (a flag, a route) is reported as such and its rows are
marked "not run"; the other sides are measured either way.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import _load
import _serving_measure as measure
import _serving_report as report
import _serving_sides as sides
from _common import machine, write_section
from _procs import Unavailable, free_port, running, settle

BENCH = Path(__file__).resolve().parent
QUICK = {
    "rounds": 2,
    "requests": 500,
    "warmup": 100,
    "seconds": 3,
    "warmup_seconds": 1,
    "moves": 3,
    "move_every": 0.7,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every side")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests at c=1")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests before c=1")
    parser.add_argument("--seconds", type=int, default=10, help="length of a c=32 run")
    parser.add_argument("--warmup-seconds", type=int, default=1, help="wrk warm-up before it")
    parser.add_argument("--wrk-threads", type=int, default=4)
    parser.add_argument("--stagger", type=float, default=0.05, help="s between wrk threads")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--pin",
        choices=["shared", "both"],
        default="both",
        help="both: also a c=32 run with wrk on a core of its own (bare app and modelyard)",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated groups ({', '.join(sides.GROUPS)}) or side names; default all",
    )
    parser.add_argument("--no-swap", action="store_true", help="skip the hot-swap run")
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--swap-concurrency", type=int, default=8)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--move-every", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + str(QUICK))
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in sys.argv[1:]}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    return args


def choose(args: argparse.Namespace) -> list[sides.Side]:
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    everything = sides.all_sides()
    known = set(sides.GROUPS) | {s.name for s in everything}
    if wanted - known:
        raise SystemExit(
            f"--only {','.join(sorted(wanted - known))}: unknown; use {', '.join(sorted(known))}"
        )
    return [s for s in everything if not wanted or s.group in wanted or s.name in wanted]


def prepare_peers(
    chosen: list[sides.Side], built: dict[str, Any], tmp: Path, args: argparse.Namespace
) -> tuple[list[sides.Side], dict[str, str], list[str]]:
    """Drop the peers whose venv is missing (an error when asked for by name); their versions."""
    versions: dict[str, str] = {}
    notes: list[str] = []
    keep = []
    ready: dict[str, str | None] = {}
    for side in chosen:
        if side.group in ("bentoml", "mlflow") and side.group not in ready:
            try:
                versions |= sides.peer_versions(side.group)
                if side.group == "mlflow":
                    sides.save_mlflow_model(built, tmp)
                ready[side.group] = None
            except Unavailable as exc:
                ready[side.group] = str(exc)
        why = ready.get(side.group)
        if why is None:
            keep.append(side)
            continue
        if {side.group, side.name} & set(args.only.split(",")):
            raise SystemExit(why)
        note = f"{side.group} skipped: {why}"
        if note not in notes:
            notes.append(note)
            print(note, file=sys.stderr)
    return keep, versions, notes


def start(
    stack: ExitStack, chosen: list[sides.Side], built: dict[str, Any], tmp: Path, help_text: str
) -> dict[str, Any]:
    """Start every side; name -> {"port", "proc"} or {"not_run": why}."""
    live: dict[str, Any] = {}
    for side in chosen:
        lacking = [f for f in side.flags if f.startswith("--") and f not in help_text]
        if side.group == "modelyard" and lacking:
            live[side.name] = {"not_run": f"modelyard serve has no {' / '.join(lacking)} flag"}
            continue
        port = free_port()
        sides.prepare(side, port, built, tmp)
        print(f"starting {side.name} ...", file=sys.stderr)
        try:
            log = tmp / f"{side.name}.log"
            server = running(side.cmd, port, side.health, log, env=side.env, cwd=side.cwd)
            proc = stack.enter_context(server)
            checks = {}
            for ep in side.endpoints:
                body = sides.bodies(ep.kind, built["rows"][:1])[0]
                try:
                    checks[ep.key] = sides.check_answer(port, ep, body, built["expected"])
                except Unavailable as exc:
                    checks[ep.key] = f"not run: {exc}"
            live[side.name] = {"port": port, "proc": proc, "checks": checks}
        except Unavailable as exc:
            live[side.name] = {"not_run": f"the server failed: {exc}"}
    return live


def rounds(
    chosen: list[sides.Side], live: dict[str, Any], built: dict[str, Any], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, list[dict[str, Any]]]]]:
    """side -> endpoint -> "c1" / "c32" / "c32_pinned" -> one result per round."""
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    active = [s for s in chosen if "port" in live[s.name]]
    reqs = {k: sides.bodies(k, built["rows"]) for k in ("friendly", "oip", "bentoml", "mlflow")}
    for r in range(args.rounds):
        order = active[r % len(active) :] + active[: r % len(active)] if active else []
        for side in order:
            info = live[side.name]
            for ep in side.endpoints:
                if info["checks"].get(ep.key, "").startswith("not run"):
                    continue
                print(f"round {r + 1}/{args.rounds}: {side.name} {ep.key}", file=sys.stderr)
                got = runs.setdefault(side.name, {}).setdefault(ep.key, {})
                kinds = ["c1", "c32"]
                if (
                    args.pin == "both"
                    and side.group in ("bare", "modelyard")
                    and (ep.key == "friendly")
                ):
                    kinds.append("c32_pinned")
                for kind in kinds:
                    try:
                        if kind == "c1":
                            res = measure.c1(
                                info["port"], ep.path, reqs[ep.kind], args.requests, args.warmup
                            )
                        else:
                            res = measure.c32(
                                info["proc"].pid,
                                info["port"],
                                ep.path,
                                reqs[ep.kind],
                                args,
                                pin=kind == "c32_pinned",
                            )
                    except (Unavailable, RuntimeError) as exc:
                        res = {"error": str(exc)}
                    got.setdefault(kind, []).append(res)
            # A side's prediction log still flushes after its load ends: let it finish before
            # the next side is measured, so that no side pays for another's work.
            settle(info["proc"].pid, timeout=15)
    return runs


def swap(built: dict[str, Any], tmp: Path, args: argparse.Namespace, help_text: str) -> Any:
    if "--poll-interval" not in help_text:
        return {"not_run": "modelyard serve has no --poll-interval flag"}
    port = free_port()
    side = sides.Side("swap", "modelyard", "", 1, [], ("--poll-interval", str(args.poll_interval)))
    sides.prepare(side, port, built, tmp)
    print("hot swap ...", file=sys.stderr)
    try:
        with running(side.cmd, port, "/readyz", tmp / "swap.log", env=side.env):
            friendly = sides.bodies("friendly", built["rows"])
            return measure.hot_swap(port, built["workspace"], friendly, args)
    except Unavailable as exc:
        return {"not_run": f"the server failed: {exc}"}


def main() -> None:
    args = parse_args()
    if _load.wrk_available() is None:
        raise SystemExit("wrk is not installed: run 'apt-get install -y wrk' (or setup_bentoml.sh)")
    # A SIGTERM runs the finally blocks too, so no server outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = choose(args)
    out: dict[str, Any] = {"settings": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        built = sides.build(tmp)
        chosen, versions, out["notes"] = prepare_peers(chosen, built, tmp, args)
        split = measure.cpu_split()
        out["machine"] = machine(
            **versions,
            wrk=measure.wrk_version(),
            cores=measure.ALL_CPUS,
            pinned={"server": split[0], "wrk": split[1]} if split else None,
        )
        help_text = sides.serve_help()
        live = start(stack, chosen, built, tmp, help_text)
        out["load_1min_start"] = round(os.getloadavg()[0], 2)
        runs = rounds(chosen, live, built, args)
        out["load_1min_end"] = round(os.getloadavg()[0], 2)
        stack.close()  # stop every side before the hot swap's server starts
        out["sides"] = {}
        for side in chosen:
            info = live[side.name]
            entry: dict[str, Any] = {
                "group": side.group,
                "label": side.label,
                "workers": side.workers,
                "command": " ".join(side.cmd[1:3] + list(side.flags)),
            }
            if "not_run" in info:
                entry["not_run"] = info["not_run"]
            else:
                entry["checks"] = info["checks"]
                entry["endpoints"] = {
                    ep.key: {"path": ep.path} for ep in side.endpoints if ep.key in info["checks"]
                }
                for key, kinds in runs.get(side.name, {}).items():
                    entry["endpoints"][key] |= {
                        kind: {"summary": measure.summary(rs), "rounds": rs}
                        for kind, rs in kinds.items()
                    }
            out["sides"][side.name] = entry
        if any(s.group == "modelyard" for s in chosen) and not args.no_swap:
            out["hot_swap"] = swap(built, tmp, args, help_text)

    (BENCH / "out").mkdir(exist_ok=True)
    (BENCH / "out" / "serving.json").write_text(json.dumps(out, indent=2, default=str))
    text = report.section(out)
    print(text)
    if not args.no_write:
        write_section(BENCH / "RESULTS.md", report.HEADER, text)


if __name__ == "__main__":
    main()
