"""Start-up cost: ``import modelyard``, ``modelyard --help`` and a job worker's start.

Each measure starts a fresh interpreter, with the source tree under test first on
``PYTHONPATH``; ``--before SRC`` measures a second tree (an older checkout's ``src``) in
alternating rounds, so that both see the same machine load:

    git archive 53c3143 src | tar -x -C /tmp/before
    .venv/bin/python bench/imports.py --before /tmp/before/src

It prints the table of the "Lean imports (issue 20)" section of RESULTS.md; that section
also holds the model image's size from ``bench/image.py``, so it is edited by hand.

A job worker's start is the time from ``python -m modelyard.jobs._worker`` being started to
its answer to a ping, which it sends once its imports are done (as ``LocalExecutor.warm``
waits for it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from _common import REPO, machine

AFTER = REPO / "src"
COUNT = "import sys\n{}\nprint(len(sys.modules))"


def env_for(src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["PYTHONPATH"] = str(src)
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(command: list[str], src: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of running ``command`` to its end."""
    cpu, t0 = children_cpu(), time.perf_counter()
    subprocess.run(command, env=env_for(src), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - cpu


def worker_start(src: Path) -> tuple[float, float]:
    """(wall seconds from starting a job worker to its answer to a ping, CPU seconds of the
    worker, which exits right after it answers)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    command = [sys.executable, "-m", "modelyard.jobs._worker", str(to_child_r), str(from_child_w)]
    cpu, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.Popen(command, pass_fds=(to_child_r, from_child_w), env=env_for(src))
    os.close(to_child_r)
    os.close(from_child_w)
    tasks = Connection(to_child_w, readable=False)
    answers = Connection(from_child_r, writable=False)
    tasks.send("ping")
    assert answers.recv() == "ping"
    elapsed = time.perf_counter() - t0
    tasks.send(None)
    proc.wait(10)
    tasks.close()
    answers.close()
    return elapsed, children_cpu() - cpu


MEASURES = {
    "`python -c 'import modelyard'`": lambda src: timed_run(
        [sys.executable, "-c", "import modelyard"], src
    ),
    "`modelyard --help`": lambda src: timed_run([sys.executable, "-m", "modelyard", "--help"], src),
    "job worker start (to its first answer)": worker_start,
}
MODULES = {
    "`python -c 'import modelyard'`": "import modelyard",
    "`modelyard --help`": (
        "import contextlib\nfrom modelyard.cli import main\n"
        "with contextlib.suppress(SystemExit):\n    main(['--help'])"
    ),
    "job worker start (to its first answer)": "import modelyard.jobs._worker",
}


def modules_loaded(statement: str, src: Path) -> int:
    command = [sys.executable, "-c", COUNT.format(statement)]
    out = subprocess.run(command, env=env_for(src), check=True, capture_output=True, text=True)
    return int(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="the src folder of the tree to compare")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measure and tree")
    args = parser.parse_args()
    trees = {"after": AFTER, **({"before": args.before} if args.before else {})}
    for src in trees.values():  # warm-up: bytecode written, files in the page cache
        for measure in MEASURES.values():
            measure(src)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    load_start = os.getloadavg()
    for _ in range(args.runs):
        for tree, src in trees.items():
            for name, measure in MEASURES.items():
                samples.setdefault((name, tree), []).append(measure(src))
    load_end = os.getloadavg()
    counts = {
        (name, tree): modules_loaded(MODULES[name], src)
        for name in MEASURES
        for tree, src in trees.items()
    }
    results = {
        f"{name} [{tree}]": {
            "median_s": statistics.median(wall for wall, _ in values),
            "best_s": min(wall for wall, _ in values),
            "cpu_median_s": statistics.median(cpu for _, cpu in values),
            "modules": counts[(name, tree)],
        }
        for (name, tree), values in samples.items()
    }
    print(json.dumps({"load": [load_start, load_end], **results}, indent=2))
    print(section(results, args, load_start, load_end))


def section(
    results: dict[str, dict[str, float]],
    args: argparse.Namespace,
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
) -> str:
    info = machine()
    targets = {"`python -c 'import modelyard'`": 0.15, "`modelyard --help`": 0.3}
    rows = []
    for name in MEASURES:
        for tree in ("before", "after"):
            r = results.get(f"{name} [{tree}]")
            if r is None:
                continue
            target = f"< {targets[name] * 1000:.0f} ms" if name in targets else "—"
            rows.append(
                f"| {name} | {tree} | {r['median_s'] * 1000:.0f} | {r['best_s'] * 1000:.0f} "
                f"| {r['cpu_median_s'] * 1000:.0f} | {r['modules']:.0f} | {target} |"
            )
    table = "\n".join(rows)
    loads = f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end"
    return f"""\
```
git archive 53c3143 src | tar -x -C /tmp/before
.venv/bin/python bench/imports.py --before /tmp/before/src --runs {args.runs}
```

{args.runs} runs per measure and tree, before and after alternating; 1-minute load average
{loads}; {info["nproc"]} cores, {info["platform"]}, Python {info["python"]}; modelyard
{info["modelyard_commit"]} against 53c3143.

| measure | tree | wall median ms | wall best ms | CPU median ms | modules | target |
| --- | --- | ---: | ---: | ---: | ---: | --- |
{table}
"""


if __name__ == "__main__":
    main()
