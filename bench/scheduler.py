"""What the scheduler costs: the overhead of a no-op job run, and how late a slot starts.

Overhead: 1,000 runs of a job whose function does nothing, each through the same path a
scheduled run takes (the slot claimed as a lease row, a history row written, the lease
kept alive, the call made in a warm worker process with its log captured, the run and
the slot closed), against the hand-written reference: calling the function in process.
Also its two parts alone: the history (claim, start, end, release) without the call,
and the worker round trip without the history.

Delay: a real scheduler loop on a per-second schedule for ``--seconds``; for each run,
its start minus its slot's due time (the end of its data interval).

    .venv/bin/python bench/scheduler.py [--runs 1000] [--seconds 60] [--postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import modelyard
from modelyard.jobs import (
    JobContext,
    JobHistory,
    Scheduler,
    open_runner,
    workspace_jobs,
)
from modelyard.jobs._context import Task
from modelyard.jobs._executors import run_tasks

NOOP = "def noop(ctx):\n    return None\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def workspace(folder: Path, url: str | None) -> modelyard.Workspace:
    (folder / "pipelines.py").write_text(NOOP)
    meta = f'[metadata]\nurl = "{url}"\n' if url else ""
    (folder / "modelyard.toml").write_text(
        meta
        + '[jobs.noop]\nfunction = "pipelines:noop"\nschedule = "* * * * * *"\n'
        + '[jobs.tick]\nfunction = "pipelines:noop"\nschedule = "* * * * * *"\n'
    )
    return modelyard.Workspace(folder)


def overhead(ws: modelyard.Workspace, runs: int) -> dict[str, list[float]]:
    spec = workspace_jobs(ws)["noop"]
    base = datetime(2020, 1, 1, tzinfo=UTC)
    out: dict[str, list[float]] = {"full run": [], "history only": [], "worker round trip": []}
    with open_runner(ws, owner="bench") as runner:
        history: JobHistory = runner.history
        executor = runner.executors.get("local")
        ctx = JobContext("noop", "r", base, base, 1, str(ws.root))
        task = Task(spec.function, ctx, None)
        for _ in range(20):  # start the worker process, warm its imports
            run_tasks(executor, [task], None)
        for i in range(runs):
            logical = base + timedelta(seconds=i)
            started = time.perf_counter()
            assert history.claim("noop", logical, runner.owner, runner.lease_s, force=True)
            run = runner.execute(spec, logical, trigger="manual")
            out["full run"].append(time.perf_counter() - started)
            assert run.status == "success", run.error
        for i in range(runs):
            logical = base + timedelta(days=1, seconds=i)
            started = time.perf_counter()
            history.claim("noop", logical, runner.owner, runner.lease_s)
            history.start_run(f"h{i}", "noop", logical, "manual", runner.owner)
            history.end_run(f"h{i}", "success", None, "")
            history.release("noop", logical, runner.owner, "success")
            out["history only"].append(time.perf_counter() - started)
        for _ in range(runs):
            started = time.perf_counter()
            run_tasks(executor, [task], None)
            out["worker round trip"].append(time.perf_counter() - started)
    from pipelines import noop  # type: ignore[import-not-found]

    direct = []
    for _ in range(runs):
        started = time.perf_counter()
        noop(ctx)
        direct.append(time.perf_counter() - started)
    out["reference: direct call"] = direct
    return out


def delay(ws: modelyard.Workspace, seconds: float) -> list[float]:
    # A job of its own: 'noop' has slots back in 2020 from the overhead runs, which the
    # scheduler would catch up second by second.
    jobs = {"tick": workspace_jobs(ws)["tick"]}
    stop = threading.Event()
    with open_runner(ws, owner="bench-delay") as runner:
        sched = Scheduler(jobs, runner)
        began = datetime.now(UTC)
        thread = threading.Thread(target=sched.run_forever, args=(stop,))
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join()
    runs = JobHistory(ws.metadata).runs("tick", limit=100_000)
    runs = [r for r in runs if r.started_at > began]
    # Skip the first: a new job's first slot is already due when the scheduler starts.
    runs = sorted(runs, key=lambda r: r.logical_date)[1:]
    return [(r.started_at - (r.logical_date + timedelta(seconds=1))).total_seconds() for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--postgres", action="store_true", help="also on 127.0.0.1:5432/test")
    args = parser.parse_args()
    backends = [("sqlite (default)", None)]
    if args.postgres:
        backends.append(("postgresql", "postgresql://postgres@127.0.0.1:5432/test"))
    for label, url in backends:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sys.path.insert(0, str(folder))
            ws = workspace(folder, url)
            if url:  # a clean slate in the shared database
                from sqlalchemy import delete

                from modelyard.backends.metadata import tables as t

                with ws.metadata.write() as conn:
                    for table in (t.job_runs, t.job_slots):
                        conn.execute(delete(table).where(table.c.job.in_(["noop", "tick"])))
            parts = overhead(ws, args.runs)
            print(f"\n### {label}: {args.runs} no-op runs\n")
            print("| path | mean ms | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: |")
            for name, values in parts.items():
                ms = [v * 1000 for v in values]
                print(
                    f"| {name} | {statistics.mean(ms):.3f} | {pct(ms, 0.5):.3f} "
                    f"| {pct(ms, 0.99):.3f} |"
                )
            late = [d * 1000 for d in delay(ws, args.seconds)]
            print(
                f"\nscheduler delay over {len(late)} per-second slots: "
                f"p50 {pct(late, 0.5):.1f} ms, "
                f"p99 {pct(late, 0.99):.1f} ms, max {max(late):.1f} ms"
            )
            ws.close()
            sys.path.remove(str(folder))
            sys.modules.pop("pipelines", None)


if __name__ == "__main__":
    main()
