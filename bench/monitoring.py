"""Drift over 1M x (20 numeric + 5 categorical) columns: modelyard against Evidently.

    bash bench/setup_evidently.sh   # once: Evidently in bench/.venv-evidently
    .venv/bin/python bench/monitoring.py [--rows 1000000] [--repeats 3] [--no-write]

Generates a reference and a current window (fixed seed; drift injected into five known
columns, the others drawn from the same distributions) as Parquet in a temporary folder.
Each side then runs in its own subprocess, reads both files into pandas DataFrames
(untimed) and times, ``--repeats`` times: modelyard's ``drift(reference_df, current_df)``
end to end, and split into ``profile(reference_df)`` and ``drift(profile, current_df)``;
Evidently's ``Report([DataDriftPreset()]).run(...)`` through bench/_evidently_worker.py.
If Evidently does not finish at ``--rows`` (time limit or memory), both sides are also
measured on the first 100,000 rows of each file. Prints a table, writes
bench/out/monitoring.json and the "## Monitoring drift (issue 6)" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from _common import machine, status_kb, write_section

BENCH = Path(__file__).resolve().parent
HEADER = "## Monitoring drift (issue 6)"
NUMERIC = [f"num_{i:02d}" for i in range(20)]
LEVELS = [3, 7, 12, 25, 50]
CATEGORICAL = [f"cat_{j}" for j in range(len(LEVELS))]
INJECTED = {
    "num_00": "normal, mean shifted by +0.5 sd",
    "num_06": "lognormal, sigma x1.5",
    "num_12": "exponential, 30% of rows with 3x the scale",
    "cat_1": "7 levels, level probabilities reversed",
    "cat_4": "50 levels, 20% of rows a new level",
}


# -- data -------------------------------------------------------------------------------


def window(rows: int, seed: int, stream: int, drifted: bool) -> pd.DataFrame:
    """One window. Distribution parameters come from ``seed`` alone, samples from
    (seed, stream), so the reference and current differ only where drift is injected."""
    params = np.random.default_rng(seed)
    rng = np.random.default_rng([seed, stream])
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        kind = i % 5
        if kind == 0:
            loc, sd = 10.0 * i, 1.0 + i
            v = rng.normal(loc + (0.5 * sd if drifted and name == "num_00" else 0.0), sd, rows)
        elif kind == 1:
            sigma = 0.5 + i / 40
            v = rng.lognormal(0.0, sigma * (1.5 if drifted and name == "num_06" else 1.0), rows)
        elif kind == 2:
            v = rng.exponential(1.0 + i, rows)
            if drifted and name == "num_12":
                v = np.where(rng.random(rows) < 0.3, v * 3.0, v)
        elif kind == 3:
            v = rng.uniform(-i, i + 1, rows)
        else:
            v = rng.poisson(20 + i, rows).astype(np.int64)  # an integer column
        cols[name] = v
    for name, levels in zip(CATEGORICAL, LEVELS, strict=True):
        p = params.dirichlet(np.full(levels, 2.0))
        if drifted and name == "cat_1":
            p = p[::-1]
        labels = np.array([f"{name}_v{k:02d}" for k in range(levels)] + [f"{name}_new"])
        codes = rng.choice(levels, rows, p=p)
        if drifted and name == "cat_4":
            codes = np.where(rng.random(rows) < 0.2, levels, codes)
        cols[name] = labels[codes]
    return pd.DataFrame(cols)


def generate(folder: Path, rows: int, seed: int) -> dict[str, str]:
    paths = {}
    for key, stream, drifted in (("reference", 1, False), ("current", 2, True)):
        table = pa.Table.from_pandas(window(rows, seed, stream, drifted), preserve_index=False)
        paths[key] = str(folder / f"{key}-{rows}.parquet")
        pq.write_table(table, paths[key])
    return paths


def head(paths: dict[str, str], rows: int) -> dict[str, str]:
    """The first ``rows`` rows of each file, as new files."""
    out = {}
    for key, path in paths.items():
        out[key] = str(Path(path).with_name(f"{key}-{rows}.parquet"))
        pq.write_table(pq.read_table(path).slice(0, rows), out[key])
    return out


# -- modelyard side (its own process) ---------------------------------------------------


def modelyard_side(cfg: dict[str, Any]) -> None:
    from modelyard.monitoring import drift, profile

    ref = pd.read_parquet(cfg["reference_path"])
    cur = pd.read_parquet(cfg["current_path"])
    times: dict[str, list[float]] = {"end_to_end": [], "profile_reference": [], "drift_current": []}
    report = None
    for _ in range(cfg["repeats"]):
        t = time.perf_counter()
        report = drift(ref, cur)
        times["end_to_end"].append(time.perf_counter() - t)
        t = time.perf_counter()
        prof = profile(ref)
        times["profile_reference"].append(time.perf_counter() - t)
        t = time.perf_counter()
        drift(prof, cur)
        times["drift_current"].append(time.perf_counter() - t)
    assert report is not None
    # The same strings as NumPy objects, which is what Evidently's pandas (2.x) reads.
    as_object = {c: object for c in ref.columns if ref[c].dtype.kind not in "iuf"}
    ref_o, cur_o = ref.astype(as_object), cur.astype(as_object)
    times["end_to_end_object_strings"] = []
    for _ in range(cfg["repeats"]):
        t = time.perf_counter()
        drift(ref_o, cur_o)
        times["end_to_end_object_strings"].append(time.perf_counter() - t)
    import modelyard

    columns = {
        name: {"drifted": c.drifted, "reason": c.reason, "metrics": c.metrics}
        for name, c in report.columns.items()
    }
    print(
        json.dumps(
            {
                "modelyard_version": getattr(modelyard, "__version__", None),
                "pandas_version": pd.__version__,
                "dtypes": sorted({str(t) for t in ref.dtypes}),
                "times_s": times,
                "columns": columns,
                "vmhwm_kb": status_kb("VmHWM"),
            }
        )
    )


# -- running the sides ------------------------------------------------------------------


def run_side(cmd: list[str], cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One side in a subprocess, with its peak RSS from wait4 and a wall-clock limit."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*cmd, json.dumps(cfg)], stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timed_out = not timer.is_alive()
        timer.cancel()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines, err_text = out.read().strip().splitlines(), err.read()
    res: dict[str, Any] = {"exit": code, "process_wall_s": time.perf_counter() - t0}
    res["peak_rss_mib"] = usage.ru_maxrss / 1024
    if code != 0 or not lines:
        if timed_out:
            res["error"] = f"timed out after {timeout:.0f} s"
        elif code == -9:
            res["error"] = "killed by signal 9 (likely the out-of-memory killer)"
        else:
            res["error"] = f"failed with exit code {code}"
        res["stderr_tail"] = err_text.strip().splitlines()[-10:]
        return res
    res.update(json.loads(lines[-1]))
    return res


def measure(paths: dict[str, str], args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    cfg = {
        "reference_path": paths["reference"],
        "current_path": paths["current"],
        "repeats": args.repeats,
        "budget_s": args.evidently_budget,
    }
    my_cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "modelyard"]
    my = run_side(my_cmd, cfg, timeout)
    print(f"modelyard: {my.get('times_s', my.get('error'))}", file=sys.stderr)
    ev_cmd = [str(args.evidently_python), str(BENCH / "_evidently_worker.py")]
    ev = run_side(ev_cmd, cfg, timeout)
    print(f"evidently: {ev.get('times_s', ev.get('error'))}", file=sys.stderr)
    return {"modelyard": my, "evidently": ev}


def summarize(rows: int, sides: dict[str, Any]) -> dict[str, Any]:
    my, ev = sides["modelyard"], sides["evidently"]
    out: dict[str, Any] = {"rows": rows}
    if "error" not in my:
        for key, ts in my["times_s"].items():
            out[f"modelyard_{key}_median_s"] = statistics.median(ts)
        out["modelyard_drifted"] = sorted(n for n, c in my["columns"].items() if c["drifted"])
    if "error" not in ev:
        out["evidently_median_s"] = statistics.median(ev["times_s"])
        out["evidently_runs"] = len(ev["times_s"])
        out["evidently_drifted"] = sorted(n for n, c in ev["columns"].items() if c["drifted"])
    if "modelyard_end_to_end_median_s" in out and "evidently_median_s" in out:
        out["ratio"] = out["evidently_median_s"] / out["modelyard_end_to_end_median_s"]
    if "modelyard_end_to_end_object_strings_median_s" in out and "evidently_median_s" in out:
        obj = out["modelyard_end_to_end_object_strings_median_s"]
        out["ratio_object_strings"] = out["evidently_median_s"] / obj
    return out


# -- report -----------------------------------------------------------------------------


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def markdown(report: dict[str, Any]) -> str:
    m, runs = report["machine"], report["runs"]
    lines = [
        HEADER,
        "",
        f"**Command**: `{report['command']}`",
        "",
        f"**Machine**: {m['nproc']} cores, {m['platform']}, Python {m['python']};"
        f" modelyard {m['modelyard_commit']}{' (tree dirty)' if m['modelyard_tree_dirty'] else ''},"
        f" pandas {m['pandas']} (Evidently's venv: pandas {m['evidently_pandas']}),"
        f" Evidently {m['evidently']}.",
        "",
        "**Settings**: reference and current windows of N rows each, 20 numeric columns"
        " (normal, lognormal, exponential, uniform, Poisson int64; 4 of each) and 5"
        " categorical string columns with 3, 7, 12, 25 and 50 levels; seed"
        f" {report['settings']['seed']}. Drift is injected into five columns: "
        + "; ".join(f"`{k}` ({v})" for k, v in INJECTED.items())
        + ". Both windows are written to Parquet once; each side reads them into pandas in"
        " its own process (untimed) and is timed on the DataFrames in memory. modelyard:"
        " `drift(reference_df, current_df)` with default thresholds, and split into"
        " `profile(reference_df)` and `drift(profile, current_df)`; once more with the"
        ' categorical columns cast to object dtype first (the column "same, object strings").'
        " Evidently:"
        " `Report([DataDriftPreset()]).run(current_data=..., reference_data=...)`, defaults"
        " (for > 1,000 rows: normed Wasserstein distance >= 0.1 on numeric columns,"
        " Jensen-Shannon distance >= 0.1 on categorical ones). Seconds are the median of"
        f" {report['settings']['repeats']} runs in one process per side.",
        "",
        "| rows per window | modelyard drift(ref, cur) s | profile(ref) s"
        " | drift(profile, cur) s | same, object strings s | Evidently s (runs)"
        " | Evidently / modelyard | < 3 s? | >= 20x? |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in runs:
        s = r["summary"]
        ev = r["sides"]["evidently"]
        ev_cell = (
            ev["error"]
            if "error" in ev
            else f"{fmt(s['evidently_median_s'])} ({s['evidently_runs']})"
        )
        e2e = s.get("modelyard_end_to_end_median_s")
        ratio = s.get("ratio")
        lines.append(
            f"| {r['rows']:,} | {fmt(e2e)} | {fmt(s.get('modelyard_profile_reference_median_s'))}"
            f" | {fmt(s.get('modelyard_drift_current_median_s'))}"
            f" | {fmt(s.get('modelyard_end_to_end_object_strings_median_s'))} | {ev_cell}"
            f" | {'-' if ratio is None else f'{ratio:.1f}x'}"
            f" | {'-' if e2e is None else 'yes' if e2e < 3 else 'no'}"
            f" | {'-' if ratio is None else 'yes' if ratio >= 20 else 'no'} |"
        )
    lines += ["", "Peak RSS per process (MiB, both DataFrames included):", ""]
    for r in runs:
        my, ev = r["sides"]["modelyard"], r["sides"]["evidently"]
        lines.append(
            f"- {r['rows']:,} rows: modelyard {my.get('peak_rss_mib', 0):,.0f},"
            f" Evidently {ev.get('peak_rss_mib', 0):,.0f}"
        )
    lines += ["", "**Columns flagged as drifted**:", ""]
    for r in runs:
        s = r["summary"]
        injected = sorted(INJECTED)
        for side in ("modelyard", "evidently"):
            got = s.get(f"{side}_drifted")
            if got is None:
                continue
            missed = sorted(set(injected) - set(got))
            extra = sorted(set(got) - set(injected))
            lines.append(
                f"- {r['rows']:,} rows, {side}: {', '.join(f'`{c}`' for c in got) or 'none'}"
                f" (missed: {', '.join(missed) or 'none'};"
                f" not injected: {', '.join(extra) or 'none'})"
            )
    lines += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def text_dtypes(side: dict[str, Any]) -> str:
    found = [d for d in side.get("dtypes", []) if "int" not in d and "float" not in d]
    return ", ".join(found) or "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per window")
    p.add_argument("--fallback-rows", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--timeout", type=float, default=900, help="seconds per side process")
    p.add_argument(
        "--evidently-budget", type=float, default=600, help="no further Evidently run past this"
    )
    p.add_argument("--evidently-python", type=Path, default=BENCH / ".venv-evidently/bin/python")
    p.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    p.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side
    p.add_argument("config", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        modelyard_side(json.loads(args.config))
        return 0
    if not args.evidently_python.exists():
        print(f"{args.evidently_python} not found; run 'bash bench/setup_evidently.sh'")
        return 2

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        t = time.perf_counter()
        paths = generate(Path(tmp), args.rows, args.seed)
        print(
            f"data: {args.rows:,} rows per window ({time.perf_counter() - t:.1f}s)", file=sys.stderr
        )
        sides = measure(paths, args, args.timeout)
        runs.append({"rows": args.rows, "sides": sides, "summary": summarize(args.rows, sides)})
        if "error" in sides["evidently"] and args.fallback_rows < args.rows:
            small = head(paths, args.fallback_rows)
            sides = measure(small, args, args.timeout)
            summary = summarize(args.fallback_rows, sides)
            runs.append({"rows": args.fallback_rows, "sides": sides, "summary": summary})

    ev = next((r["sides"]["evidently"] for r in runs if "error" not in r["sides"]["evidently"]), {})
    notes = [
        "Each side runs once per process after reading the files, so the first of its runs"
        " is a cold one (caches, lazy imports); the median is over all runs.",
        f"Categorical columns come back from Parquet as dtype"
        f" {text_dtypes(runs[0]['sides']['modelyard'])} under modelyard's pandas and"
        f" {text_dtypes(ev)} under Evidently's (Evidently 0.7 does not import with pandas 3).",
    ]
    for r in runs:
        s = r["summary"]
        if "ratio_object_strings" in s:
            notes.append(
                f"{r['rows']:,} rows: with the categorical columns cast to object strings"
                " (Evidently's input) before timing, modelyard's drift(ref, cur) takes"
                f" {fmt(s['modelyard_end_to_end_object_strings_median_s'])} s, and Evidently /"
                f" modelyard is {s['ratio_object_strings']:.1f}x."
            )
        if len(r["sides"]["evidently"].get("times_s", [])) < args.repeats:
            notes.append(
                f"Evidently ran fewer than {args.repeats} times at {r['rows']:,} rows: slow."
            )
    report = {
        "command": " ".join([".venv/bin/python", "bench/monitoring.py", *sys.argv[1:]]),
        "machine": machine(
            pandas=pd.__version__,
            numpy=np.__version__,
            pyarrow=pa.__version__,
            evidently=ev.get("evidently_version"),
            evidently_pandas=ev.get("pandas_version"),
        ),
        "settings": vars(args) | {"evidently_python": str(args.evidently_python)},
        "injected": INJECTED,
        "runs": runs,
        "notes": notes,
    }
    out = BENCH / "out/monitoring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    text = markdown(report)
    print(text)
    if not args.no_write:
        write_section(BENCH / "RESULTS.md", HEADER, text)
        print(f"wrote {out} and the '{HEADER}' section of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
