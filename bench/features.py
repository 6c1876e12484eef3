"""Point-in-time historical join: modelyard against a hand-written DuckDB ASOF JOIN and Feast.

    bash bench/setup_feast.sh      # once: Feast with its DuckDB offline store, bench/.venv-feast
    .venv/bin/python bench/features.py [--scale 1|10] [--no-feast] [--repeats 3] [--rounds 1]

Generates the data once (fixed seed) as Parquet in a temporary folder, then times, on the
same files and each in its own subprocess (so that peak memory is per side): modelyard's
``ws.features.get_historical(..., output="arrow")``; a hand-written DuckDB query (QUALIFY
row_number() to settle ties, then ASOF LEFT JOIN with the ttl); and Feast's duckdb offline
store through bench/_feast_worker.py. ``--rounds`` runs each side's process that many
times, interleaved, for a machine whose load moves. Every result is checked against a
brute-force reference computed in numpy, by the entity rows' ``request_id`` column.
Prints a table and writes bench/out/features-scale{N}.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from _common import machine, status_kb

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TTL_DAYS = 30
TTL_US = TTL_DAYS * 86_400 * 1_000_000
FEATURES = [f"f{i}" for i in range(10)]
PER_DRIVER = 100
START_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
SPAN_US = 180 * 86_400 * 1_000_000
TS = pa.timestamp("us", tz="UTC")

# The hand-written reference: settle (driver, time) ties by the latest created time, then
# take the latest row at or before each entity row and apply the ttl to it. Entity rows
# come back in their own order, as modelyard's do.
HAND_SQL = """
WITH f AS (
    SELECT driver_id, event_timestamp AS fts, {features}
    FROM read_parquet({path})
    QUALIFY row_number() OVER (PARTITION BY driver_id, event_timestamp ORDER BY created DESC) = 1
)
SELECT e.* EXCLUDE (__row), {outputs}
FROM entities e ASOF LEFT JOIN f ON e.driver_id = f.driver_id AND e.event_timestamp >= f.fts
ORDER BY e.__row
"""


def hand_sql(features_path: str) -> str:
    fresh = f"f.fts > e.event_timestamp - INTERVAL {TTL_US} MICROSECONDS"
    return HAND_SQL.format(
        features=", ".join(FEATURES),
        path="'" + features_path.replace("'", "''") + "'",
        outputs=", ".join(f"CASE WHEN {fresh} THEN f.{c} END AS {c}" for c in FEATURES),
    )


# -- data -------------------------------------------------------------------------------


def generate(folder: Path, scale: int, seed: int) -> dict[str, Any]:
    """features.parquet (drivers x 100 rows, written in event-time order, as a log is) and
    entities.parquet (shuffled); returns counts of the cases that make the join hard."""
    rng = np.random.default_rng(seed)
    n_drivers = 10_000 * scale
    n = n_drivers * PER_DRIVER
    driver = np.repeat(np.arange(n_drivers, dtype=np.int64), PER_DRIVER)
    ts = START_US + rng.integers(0, SPAN_US, n)
    # 1% of rows restate the event time of the driver's previous row with another
    # created time, earlier or later, so that the created time must settle the tie.
    dup = (rng.random(n) < 0.01) & (np.arange(n) % PER_DRIVER != 0)
    ts[dup] = ts[np.flatnonzero(dup) - 1]
    created = ts + rng.integers(0, 2 * 3_600_000_000, n)
    values = rng.standard_normal((len(FEATURES), n))
    order = rng.permutation(n)
    order = order[np.argsort(ts[order], kind="stable")]
    feats = pa.table(
        {
            "driver_id": driver[order],
            "event_timestamp": pa.array(ts[order], TS),
            "created": pa.array(created[order], TS),
            **{c: values[i][order] for i, c in enumerate(FEATURES)},
        }
    )
    pq.write_table(feats, folder / "features.parquet", row_group_size=122_880)

    m = 100_000 * scale
    known = rng.random(m) >= 0.03  # 3% of entity rows name a driver with no feature row
    e_driver = np.where(
        known, rng.integers(0, n_drivers, m), rng.integers(n_drivers, 2 * n_drivers, m)
    )
    e_ts = START_US - 15 * 86_400_000_000 + rng.integers(0, SPAN_US + 60 * 86_400_000_000, m)
    # Some rows sit exactly on a feature row's time (included) and some exactly ttl after
    # one (excluded: the window is (t - ttl, t]).
    pick = rng.integers(0, n, m)
    kind = rng.random(m)
    exact = known & (kind < 0.02)
    edge = known & (kind >= 0.02) & (kind < 0.025)
    e_driver[exact | edge] = driver[pick[exact | edge]]
    e_ts[exact] = ts[pick[exact]]
    e_ts[edge] = ts[pick[edge]] + TTL_US
    first = np.full(2 * n_drivers, np.iinfo(np.int64).max)
    np.minimum.at(first, driver, ts)
    ents = pa.table(
        {
            "driver_id": e_driver,
            "event_timestamp": pa.array(e_ts, TS),
            "label": rng.integers(0, 2, m),
            "request_id": np.arange(m, dtype=np.int64),
        }
    ).take(rng.permutation(m))
    pq.write_table(ents, folder / "entities.parquet")
    return {
        "feature_rows": n,
        "drivers": n_drivers,
        "duplicate_time_rows": int(dup.sum()),
        "entity_rows": m,
        "entity_rows_unknown_driver": int((~known).sum()),
        "entity_rows_before_first_feature": int((known & (e_ts < first[e_driver])).sum()),
        "entity_rows_on_a_feature_time": int(exact.sum()),
        "entity_rows_exactly_ttl_after_a_feature_time": int(edge.sum()),
    }


def brute_force(folder: Path, inclusive_ttl: bool = False) -> np.ndarray:
    """Per entity row (by request_id), every feature row of its driver is tried: the
    latest by (event time, created, file position) with event time in (t - ttl, t], or
    in [t - ttl, t] with ``inclusive_ttl`` (Feast's window)."""
    f = pq.read_table(folder / "features.parquet")
    fd = f["driver_id"].to_numpy()
    ft = f["event_timestamp"].cast(pa.int64()).to_numpy()
    fc = f["created"].cast(pa.int64()).to_numpy()
    order = np.lexsort((np.arange(len(fd)), fc, ft, fd))
    fd, ft = fd[order], ft[order]
    fv = np.column_stack([f[c].to_numpy()[order] for c in FEATURES])
    del f
    e = pq.read_table(folder / "entities.parquet")
    ed = e["driver_id"].to_numpy()
    et = e["event_timestamp"].cast(pa.int64()).to_numpy()
    rid = e["request_id"].to_numpy()
    out = np.full((len(ed), len(FEATURES)), np.nan)
    eorder = np.argsort(ed, kind="stable")
    drivers, starts = np.unique(ed[eorder], return_index=True)
    bounds = np.append(starts, len(ed))
    lo = np.searchsorted(fd, drivers, "left")
    hi = np.searchsorted(fd, drivers, "right")
    for i in range(len(drivers)):
        if lo[i] == hi[i]:
            continue
        rows = eorder[bounds[i] : bounds[i + 1]]
        t = et[rows][:, None]
        cand = ft[lo[i] : hi[i]][None, :]
        ok = (cand <= t) & ((cand >= t - TTL_US) if inclusive_ttl else (cand > t - TTL_US))
        last = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
        hit = ok.any(axis=1)
        out[rid[rows[hit]]] = fv[lo[i] + last[hit]]
    return out


def compare(result: pa.Table, entities: pa.Table, ref: np.ndarray, ordered: bool) -> dict:
    """Mismatching rows against the brute-force reference (by request_id)."""
    rid = result["request_id"].to_numpy()
    got = np.full_like(ref, np.nan)
    for j, c in enumerate(FEATURES):
        got[rid, j] = result[c].cast(pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~((got == ref) | (np.isnan(got) & np.isnan(ref)))
    out = {
        "rows": result.num_rows,
        "mismatched_rows": int(bad.any(axis=1).sum()),
        "null_in_reference_not_in_result": int((np.isnan(ref) & ~np.isnan(got)).any(1).sum()),
        "null_in_result_not_in_reference": int((~np.isnan(ref) & np.isnan(got)).any(1).sum()),
        "missing_or_duplicate_rows": int(len(ref) - len(np.unique(rid))),
    }
    if ordered:
        out["entity_order_kept"] = bool(np.array_equal(rid, entities["request_id"].to_numpy()))
    return out


# -- the timed sides (each in its own process) ------------------------------------------


def side(name: str, cfg: dict[str, Any]) -> None:
    entities = pq.read_table(cfg["entities_path"])
    if name == "modelyard":
        import modelyard
        from modelyard.features import Entity, FeatureView, FileSource

        ws = modelyard.Workspace.init(Path(cfg["repo"]), environ={})
        driver = Entity("driver", {"driver_id": "int64"})
        source = FileSource(cfg["features_path"], created_timestamp_field="created")
        features = dict.fromkeys(FEATURES, "float64")
        view = FeatureView(
            "driver_stats", entity=driver, source=source, features=features, ttl=cfg["ttl"]
        )
        ws.features.apply([driver, view])

        def join() -> pa.Table:
            return ws.features.get_historical(entities, ["driver_stats:*"], output="arrow")
    else:
        sql = hand_sql(cfg["features_path"])

        def join() -> pa.Table:
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                rows = pa.array(np.arange(entities.num_rows, dtype=np.int64))
                con.register("entities", entities.append_column("__row", rows))
                return con.sql(sql).to_arrow_table()
            finally:
                con.close()

    rss_before = status_kb("VmRSS")
    times, cpu = [], []
    result = None
    for _ in range(cfg["repeats"]):
        del result
        t0, c0 = time.perf_counter(), time.process_time()
        result = join()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert result is not None
    pq.write_table(result, cfg["result_path"])
    report = {
        "times_s": times,
        "cpu_s": cpu,
        "rows": result.num_rows,
        "columns": result.column_names,
        "rss_before_join_kb": rss_before,
        "vmhwm_kb": status_kb("VmHWM"),
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(report))


def run_side(name: str, cmd: list[str], cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one side; its peak RSS comes from wait4 on that child alone."""
    cfg = {**cfg, "result_path": str(work / f"result-{name}.parquet"), "repo": str(work / name)}
    out, err = work / f"{name}.out", work / f"{name}.err"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen([*cmd, json.dumps(cfg)], stdout=o, stderr=e, cwd=work)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    lines = out.read_text().strip().splitlines()
    res: dict[str, Any] = {"exit": proc.returncode, "process_wall_s": wall, "loadavg_1m": load}
    res["peak_rss_mib"] = usage.ru_maxrss / 1024
    if proc.returncode != 0 or not lines:
        why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else "failed"
        if proc.returncode == -9:
            why += " (likely the out-of-memory killer)"
        res["error"] = why
        res["stderr_tail"] = err.read_text().strip().splitlines()[-10:]
        return res
    res.update(json.loads(lines[-1]))
    return res


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """All timings of all rounds of one side; peak memory is the highest round's."""
    out: dict[str, Any] = {"rounds": rounds}
    out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rounds)
    failed = [r for r in rounds if "error" in r]
    if failed:
        out["error"] = failed[0]["error"]
        return out
    out["times_s"] = [t for r in rounds for t in r["times_s"]]
    out["cpu_s"] = [t for r in rounds for t in r["cpu_s"]]
    out["best_s"] = min(out["times_s"])
    out["median_s"] = statistics.median(out["times_s"])
    out["cpu_median_s"] = statistics.median(out["cpu_s"])
    out["rss_before_join_mib"] = max(r["rss_before_join_kb"] for r in rounds) / 1024
    for key in ("rows", "columns", "feast_version"):
        if key in rounds[-1]:
            out[key] = rounds[-1][key]
    return out


def run_sides(work: Path, cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Each side in its own process, the sides interleaved round by round, so that a
    change in the machine's load falls on all of them."""
    me = [sys.executable, str(Path(__file__).resolve()), "--side"]
    cmds = {"modelyard": [*me, "modelyard"], "hand_asof": [*me, "hand_asof"]}
    if args.feast:
        cmds["feast"] = [str(args.feast_python), str(BENCH / "_feast_worker.py")]
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in cmds}
    for i in range(args.rounds):
        for name, cmd in cmds.items():
            if rounds[name] and "error" in rounds[name][-1]:
                continue  # it failed (out of memory, say) once; that is its result
            rounds[name].append(run_side(name, cmd, cfg, work))
            print(f"round {i + 1} {name}: {fmt_s(rounds[name][-1], 'times_s')}", file=sys.stderr)
    sides: dict[str, Any] = {name: merge_rounds(r) for name, r in rounds.items()}
    sides.setdefault("feast", None)
    return sides


def check_sides(work: Path, sides: dict[str, Any]) -> dict[str, Any]:
    """Each result against the brute-force reference, and modelyard against the
    hand-written query row by row."""
    entities = pq.read_table(work / "entities.parquet")
    ref = brute_force(work)
    checks: dict[str, Any] = {}
    results: dict[str, pa.Table] = {}
    for name, r in sides.items():
        if r and "error" not in r:
            results[name] = pq.read_table(work / f"result-{name}.parquet")
            checks[name] = compare(results[name], entities, ref, name != "feast")
    if "feast" in results:
        # Feast keeps a row exactly ttl old ([t - ttl, t]); modelyard does not ((t - ttl, t]).
        inclusive = brute_force(work, inclusive_ttl=True)
        checks["feast_vs_inclusive_ttl_reference"] = compare(
            results["feast"], entities, inclusive, False
        )
    if "modelyard" in results and "hand_asof" in results:
        a, b = results["modelyard"], results["hand_asof"]
        same = [
            pc.fill_null(pc.equal(a[c], b[c]), False).to_numpy(zero_copy_only=False)
            | (
                a[c].is_null().to_numpy(zero_copy_only=False)
                & b[c].is_null().to_numpy(zero_copy_only=False)
            )
            for c in a.column_names
        ]
        checks["modelyard_vs_hand_asof"] = {
            "same_columns": a.column_names == b.column_names,
            "identical_tables": a.equals(b),
            "mismatched_rows": int((~np.logical_and.reduce(same)).sum()),
        }
    return checks


# -- report -----------------------------------------------------------------------------


def fmt_s(r: dict[str, Any] | None, key: str) -> str:
    if r is None:
        return "not run"
    if "error" in r:
        return r["error"]
    if isinstance(r[key], list):
        return " ".join(f"{x:.3f}" for x in r[key])
    return f"{r[key]:.3f}"


def table(sides: dict[str, Any], checks: dict[str, Any], ratios: dict[str, float]) -> str:
    lines = [
        "| side | best s | median s | CPU s (median) | peak RSS MiB (before join) "
        "| rows != brute force |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {"modelyard": "modelyard", "hand_asof": "hand-written ASOF", "feast": "Feast duckdb"}
    for key, label in labels.items():
        r = sides.get(key)
        rss = "-"
        if r:
            rss = f"{r['peak_rss_mib']:,.0f}"
            rss += f" ({r['rss_before_join_mib']:,.0f})" if "rss_before_join_mib" in r else ""
        bad = str(checks[key]["mismatched_rows"]) if key in checks else "-"
        cells = [fmt_s(r, "best_s"), fmt_s(r, "median_s"), fmt_s(r, "cpu_median_s")]
        lines.append(f"| {label} | {' | '.join(cells)} | {rss} | {bad} |")
    for key, value in ratios.items():
        lines.append(f"{key}: {value:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=1, help="1: 100k x 1M rows; 10: 1M x 10M")
    p.add_argument("--repeats", type=int, default=3, help="timed joins per side process")
    p.add_argument(
        "--rounds", type=int, default=1, help="processes per side, interleaved (busy machines)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-feast", dest="feast", action="store_false")
    p.add_argument("--feast-python", type=Path, default=BENCH / ".venv-feast/bin/python")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side
    p.add_argument("config", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        cfg = json.loads(args.config)
        from datetime import timedelta

        side(args.side, {**cfg, "ttl": timedelta(days=cfg["ttl_days"])})
        return 0
    if args.feast and not args.feast_python.exists():
        print(f"{args.feast_python} not found; run 'bash bench/setup_feast.sh'", file=sys.stderr)
        return 2
    out_path = args.out or BENCH / f"out/features-scale{args.scale}.json"

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        data = generate(work, args.scale, args.seed)
        print(f"data: {data} ({time.perf_counter() - t:.1f}s)", file=sys.stderr)
        cfg = {
            "features_path": str(work / "features.parquet"),
            "entities_path": str(work / "entities.parquet"),
            "features": FEATURES,
            "ttl_days": TTL_DAYS,
            "repeats": args.repeats,
        }
        sides = run_sides(work, cfg, args)
        checks = check_sides(work, sides)

    my, hand, fe = sides["modelyard"], sides["hand_asof"], sides["feast"]
    ratios: dict[str, float] = {}
    if my and hand and "best_s" in my and "best_s" in hand:
        ratios["modelyard_over_hand_best"] = my["best_s"] / hand["best_s"]
        ratios["modelyard_over_hand_median"] = my["median_s"] / hand["median_s"]
    if my and fe and "best_s" in my and "best_s" in fe:
        ratios["feast_over_modelyard_best"] = fe["best_s"] / my["best_s"]
        ratios["feast_over_modelyard_median"] = fe["median_s"] / my["median_s"]
    report = {
        "command": " ".join([".venv/bin/python", "bench/features.py", *sys.argv[1:]]),
        "machine": machine(
            duckdb=duckdb.__version__,
            pyarrow=pa.__version__,
            feast=fe.get("feast_version") if fe else None,
        ),
        "settings": {
            "scale": args.scale,
            "repeats": args.repeats,
            "rounds": args.rounds,
            "seed": args.seed,
        },
        "data": data,
        "ttl_days": TTL_DAYS,
        "hand_written_sql": hand_sql("features.parquet").strip(),
        "sides": sides,
        "checks": checks,
        "ratios": ratios,
        "targets": {
            "modelyard_over_hand_le_1": ratios.get("modelyard_over_hand_best", 99.0) <= 1.0,
            "feast_over_modelyard_ge_3": ratios.get("feast_over_modelyard_best", 0.0) >= 3.0,
            "identical_to_brute_force": checks.get("modelyard", {}).get("mismatched_rows") == 0,
            "identical_to_hand_asof": checks.get("modelyard_vs_hand_asof", {}).get(
                "mismatched_rows"
            )
            == 0,
        },
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["machine"]))
    print(json.dumps(data))
    print(table(sides, checks, ratios))
    print(json.dumps({"checks": checks, "targets": report["targets"]}, indent=1))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
