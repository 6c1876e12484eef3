"""Markdown for bench/serving.py: the "## Serving (issue 5)" section of bench/RESULTS.md."""

from __future__ import annotations

from typing import Any

HEADER = "## Serving (issue 5)"
C1_TARGET = {"p50_ms": 1.5, "p99_ms": 4.0}
RATIO_TARGET = 3.0


def _ms(v: Any) -> str:
    return "" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _peer_label(cfg: dict[str, Any]) -> str:
    if cfg["peer"] == "bentoml":
        return (
            f"BentoML, workers={cfg['workers']}, batchable max_batch_size={cfg['max_batch_size']}"
            f" max_latency_ms={cfg['max_latency_ms']}"
        )
    return f"MLflow, -w {cfg['workers']}"


def _peer_endpoint(cfg: dict[str, Any]) -> str:
    return "POST /predict" if cfg["peer"] == "bentoml" else "POST /invocations"


def _c1_row(server: str, endpoint: str, r: dict[str, Any] | None, target: bool) -> str:
    if r is None:
        return f"| {server} | {endpoint} | (skipped) | | | | |"
    if "not_run" in r:
        met = "**not run**" if target else ""
        why = _esc(r["not_run"])
        return f"| {server} | {endpoint} | **not run**: {why} | | | {_t(target)} | {met} |"
    met = ""
    if target:
        ok = all(r[k] < v for k, v in C1_TARGET.items()) and r["failures"] == 0
        met = "yes" if ok else "**no**"
    return (
        f"| {server} | {endpoint} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['failures']} "
        f"| {_t(target)} | {met} |"
    )


def _t(target: bool) -> str:
    return "p50 < 1.5, p99 < 4" if target else "reference"


def _c32_row(server: str, endpoint: str, r: dict[str, Any] | None) -> str:
    if r is None:
        return f"| {server} | {endpoint} | (skipped) | | | | | | | |"
    if "not_run" in r:
        return f"| {server} | {endpoint} | **not run**: {_esc(r['not_run'])} | | | | | | | |"
    return (
        f"| {server} | {endpoint} | {_n(r['ok_rps'])} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} "
        f"| {r['non_2xx']:,} | {r['socket_errors']:,} | {_cores(r)} "
        f"| {r['wrk_cores']:.2f} | {' / '.join(_n(x) for x in r.get('runs_ok_rps', []))} |"
    )


def _cores(r: dict[str, Any]) -> str:
    per = r.get("server_cores_by_process", [])
    split = f" ({' + '.join(f'{c:.2f}' for c in per)})" if len(per) > 1 else ""
    return f"{r['server_cores']:.2f}{split}"


def _best(peers: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The peer configuration with the most successful req/s among those with no failure."""
    done = [
        p
        for p in peers
        if p["config"]["peer"] == name
        and "c32" in p
        and p["c32"]["non_2xx"] == 0
        and p["c32"]["socket_errors"] == 0
    ]
    return max(done, key=lambda p: p["c32"]["ok_rps"], default=None)


def section(out: dict[str, Any]) -> str:
    m, my, peers = out["machine"], out["modelyard"], out["peers"]
    s = out["settings"]
    lines = [
        HEADER,
        "",
        "```",
        "bash bench/setup_bentoml.sh   # BentoML + scikit-learn in bench/.venv-bentoml; apt wrk",
        "bash bench/setup_mlflow.sh    # MLflow in bench/.venv-mlflow; never modelyard deps",
        ".venv/bin/python bench/serving.py",
        "```",
        "",
        f"Machine: {m['nproc']} cores, {m['platform']}, Python {m['python']}; 1-minute load "
        f"{out['load_1min_start']} at the start, {out['load_1min_end']} at the end. modelyard at "
        f"`{m['modelyard_commit']}`{' (tree dirty)' if m['modelyard_tree_dirty'] else ''}. "
        f"BentoML {m.get('bentoml', '-')}, MLflow {m.get('mlflow', '-')} (scikit-learn "
        f"{m.get('scikit_learn_bentoml_venv', '-')} / {m.get('scikit_learn_mlflow_venv', '-')} in "
        f"their venvs), wrk {m['wrk']}. Raw numbers: `bench/out/serving.json` (not committed).",
        "",
        f"**Summary**: {_summary(my, peers)}",
        "",
        "**Model**: `LogisticRegression(max_iter=500)` on scikit-learn's `make_classification` "
        "(20 float features f0..f19, 5,000 rows, seed 0), registered as `lr` version 1 (alias "
        "production) and pickled once; BentoML and MLflow load that pickle in their own venvs. "
        "Version 2 (`C=0.05`) exists for the hot swap. Requests cycle through the first 500 "
        "rows (100 under wrk). Every server answers `predict_proba` (modelyard also the label); "
        f"answers to row 0 against the model in this process: {_checks(my, peers)}.",
        "",
        "**Settings**: one server at a time, on the same 2 cores as the load generator (other "
        "work on the machine shows in the load figures):",
        "",
        "- modelyard: c=1 on `modelyard serve lr@production` (defaults: 1 process, no "
        "batching; log level info, one JSON line per request); c=32 with "
        f"`--max-batch-size {s['max_batch_size']} --max-latency-ms {s['max_latency_ms']} "
        f"--workers N`; hot swap with `--poll-interval {s['poll_interval']}` (1 process). A "
        "1-process reference without batching is measured at c=32 too.",
        "- BentoML: `bentoml serve _bentoml_service:LogisticRegression` "
        "(`bench/_bentoml_service.py`), `@bentoml.service(workers=N)` and "
        f"`@bentoml.api(batchable=True, max_batch_size={s['max_batch_size']}, "
        'max_latency_ms=M)` on an `np.ndarray` input, body `{"rows": [[...20 floats]]}`; '
        "access log on (default). Its `max_latency_ms` is a deadline, not a batch window (the "
        "window adapts by itself): requests whose estimated latency passes it are refused with "
        "503. Run with modelyard's 2 ms and with BentoML's default (60000 ms).",
        "- MLflow: `mlflow models serve -m MODEL --env-manager local -w N -h 127.0.0.1` "
        "(uvicorn workers; access log on), model saved by `mlflow.sklearn.save_model(..., "
        'pyfunc_predict_fn="predict_proba")`, body `{"dataframe_records": [{...}]}`.',
        f"- Processes N = {', '.join(map(str, s['workers']))}, the same for all three "
        "(modelyard `--workers N`, BentoML `workers=N`, MLflow `-w N`); BentoML also takes "
        '`workers="cpu_count"` (2 here), and 1 is the default of all three. The ratios '
        "compare equal N, and each side's best N.",
        f"- c=1: one keep-alive `http.client` connection, {s['warmup']} warm-up then "
        f"{s['requests']:,} timed requests. c={s['concurrency']}: `wrk "
        f"-t{s['wrk_threads']} -c{s['concurrency']} -d{s['seconds']:g}s` after "
        f"{s['warmup_seconds']:g} s of warm-up, {s['rounds']} times, each server's best run "
        "kept. The wrk threads start "
        f"{s['stagger'] * 1000:g} ms apart: opened all at once, the connections of a server "
        "whose workers share one listening socket (BentoML, MLflow) all go to the worker that "
        "wakes first, and with keep-alive the other worker idles for the whole run (in a side "
        "test, BentoML with 2 workers: about 700 req/s that way, 1,400 staggered); req/s "
        "divides by the threads' mean running time. Measuring starts "
        "once the server answers its health check and its processes are idle. wrk's latencies "
        "include any non-2xx answer. Hot swap: an asyncio client on "
        f"{s['swap_concurrency']} keep-alive connections.",
        "",
        "**Concurrency 1** (single-row JSON, ms as the client sees it)",
        "",
        "| server | endpoint | p50 ms | p99 ms | failures | target | met? |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
        _c1_row("modelyard", f"POST {_friendly()}", my.get("c1_friendly"), True),
        _c1_row("modelyard", f"POST {_oip()}", my.get("c1_oip"), True),
    ]
    for r in my.get("batch", []):
        if "c1_friendly" in r:
            label = f"modelyard, batching on, -w {r['workers']}"
            lines.append(_c1_row(label, f"POST {_friendly()}", r["c1_friendly"], False))
    for p in peers:
        lines.append(_c1_row(_peer_label(p["config"]), _peer_endpoint(p["config"]), _c1(p), False))
    lines += [
        "",
        f"**Concurrency {s['concurrency']}, {s['seconds']:g} s, best of {s['rounds']} runs** "
        "(each run on new connections; req/s counts 2xx answers only; non-2xx and socket "
        "errors are summed over the runs; "
        "CPU in cores = CPU seconds / wall seconds: the server's processes, each in brackets "
        "where more than one worked, and wrk)",
        "",
        "| server | endpoint | req/s | p50 ms | p99 ms | non-2xx | socket errors "
        "| server CPU | wrk CPU | req/s of each run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in my.get("batch", []):
        label = f"modelyard, batching on, -w {r['workers']}"
        if "not_run" in r:
            lines.append(_c32_row(label, "", r))
            continue
        lines.append(_c32_row(label, f"POST {_friendly()}", r.get("c32_friendly")))
        lines.append(_c32_row(label, f"POST {_oip()}", r.get("c32_oip")))
    lines.append(
        _c32_row(
            "modelyard, no batching, 1 process (reference)",
            f"POST {_friendly()}",
            my.get("c32_nobatch_friendly"),
        )
    )
    for p in peers:
        lines.append(_c32_row(_peer_label(p["config"]), _peer_endpoint(p["config"]), _c32(p)))
    loads = [r["load_1min"] for r in _all_c32(my, peers)]
    if loads:
        lines += [
            "",
            f"1-minute load average at the start of the c={s['concurrency']} runs: "
            f"{min(loads):.2f} to {max(loads):.2f} (2 cores; the server and wrk account for up "
            "to about 2 of it).",
        ]
    lines += ["", *_ratios(my, peers), "", *_swap(my.get("hot_swap"), s), "", *_notes(peers)]
    return "\n".join(lines)


def _summary(my: dict[str, Any], peers: list[dict[str, Any]]) -> str:
    parts = []
    c1 = [r for r in (my.get("c1_friendly"), my.get("c1_oip")) if r and "not_run" not in r]
    if len(c1) == 2:
        ok = all(r[k] < v for r in c1 for k, v in C1_TARGET.items())
        worst = max(r["p99_ms"] for r in c1)
        parts.append(f"c=1 target {'met' if ok else '**missed**'} (worst p99 {_ms(worst)} ms)")
    else:
        parts.append("c=1 **not fully measured**")
    ratios = []
    for r in my.get("batch", []):
        c = r.get("c32_friendly")
        if not c or "not_run" in c:
            continue
        for name, title in (("bentoml", "BentoML"), ("mlflow", "MLflow")):
            same = [p for p in peers if p["config"]["workers"] == r["workers"]]
            best = _best(same, name)
            if best:
                ratios.append((c["ok_rps"] / best["c32"]["ok_rps"], title, r["workers"]))
    if ratios:
        low = min(ratios)
        verdict = "met" if low[0] >= RATIO_TARGET else "**missed**"
        parts.append(
            f"c=32 target {verdict} (lowest ratio {low[0]:.2f}x, {low[1]}, {low[2]} "
            f"process{'es' if low[2] > 1 else ''} each)"
        )
    else:
        parts.append("c=32 ratios **not measured**")
    swap = my.get("hot_swap")
    if swap and "not_run" not in swap:
        ok = swap["failures"] == 0 and swap["distinct_versions"] == 2
        parts.append(
            f"hot swap {'met' if ok else '**missed**'} ({swap['failures']} failed, "
            f"{swap['distinct_versions']} versions seen)"
        )
    else:
        parts.append("hot swap **not measured**")
    return "; ".join(parts) + "."


def _all_c32(my: dict[str, Any], peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [my.get("c32_nobatch_friendly")]
    found += [r.get(k) for r in my.get("batch", []) for k in ("c32_friendly", "c32_oip")]
    found += [p.get("c32") for p in peers]
    return [r for r in found if r and "load_1min" in r]


def _notes(peers: list[dict[str, Any]]) -> list[str]:
    """What the peers' own numbers show that a reader could take for a benchmark fault."""
    notes = []
    mlflow = {
        p["config"]["workers"]: p["c1"]
        for p in peers
        if "c1" in p and p["config"]["peer"] == "mlflow"
    }
    slow = [
        w
        for w, r in mlflow.items()
        if w > 1 and 1 in mlflow and r["p50_ms"] > 5 * mlflow[1]["p50_ms"]
    ]
    if slow:
        notes.append(
            f"- MLflow with `-w {slow[0]}` at c=1 takes {mlflow[slow[0]]['p50_ms']:.0f} ms per "
            f"request (p50) against {mlflow[1]['p50_ms']:.1f} ms with `-w 1`, on a keep-alive "
            "connection: in uvicorn's multi-process mode the answer leaves in two TCP segments "
            "and the second waits for the client's delayed ACK (Nagle's algorithm); a client "
            "that sets TCP_QUICKACK, or opens a connection per request, sees a few ms."
        )
    unbalanced = [
        p
        for p in peers
        if p["config"]["workers"] > 1
        and "c32" in p
        and len(p["c32"]["server_cores_by_process"]) > 0
        and p["c32"]["server_cores_by_process"][0] > 0.8 * p["c32"]["server_cores"]
    ]
    for p in unbalanced:
        notes.append(
            f"- {_peer_label(p['config'])}: in its best run one process did "
            f"{p['c32']['server_cores_by_process'][0]:.2f} of {p['c32']['server_cores']:.2f} "
            "cores of work even with wrk's threads staggered: one worker accepted (nearly) all "
            "the connections."
        )
    shed = [p for p in peers if "c32" in p and p["c32"]["non_2xx"] > 0]
    for p in shed:
        notes.append(
            f"- {_peer_label(p['config'])}: {p['c32']['non_2xx']:,} of "
            f"{p['c32'].get('requests_all_runs', p['c32']['requests']):,} requests answered "
            "503, BentoML refusing requests whose estimated latency passes max_latency_ms; "
            "that configuration is left out of the ratios."
        )
    return (["Notes:", "", *notes, ""]) if notes else []


def _checks(my: dict[str, Any], peers: list[dict[str, Any]]) -> str:
    found = {"modelyard": {my.get("check_friendly", "not run")}}
    if "check_oip" in my:
        found["modelyard OIP"] = {my["check_oip"]}
    for p in peers:
        name = "BentoML" if p["config"]["peer"] == "bentoml" else "MLflow"
        found.setdefault(name, set()).add(p.get("check", "not run"))
    return ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in found.items())


def _friendly() -> str:
    return "/v1/models/lr/predict"


def _oip() -> str:
    return "/v2/models/lr/infer"


def _c1(p: dict[str, Any]) -> dict[str, Any]:
    return p["c1"] if "c1" in p else {"not_run": p.get("not_run", "failed")}


def _c32(p: dict[str, Any]) -> dict[str, Any]:
    return p["c32"] if "c32" in p else {"not_run": p.get("not_run", "failed")}


def _ratios(my: dict[str, Any], peers: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| processes | peer | modelyard req/s (batching on) | peer req/s (its best failure-free "
        "configuration) | ratio | target | met? |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    runs = [r for r in my.get("batch", [])]
    done = [r for r in runs if "c32_friendly" in r and "not_run" not in r["c32_friendly"]]
    rows: list[tuple[str, dict[str, Any] | None, list[dict[str, Any]]]] = [
        (str(r["workers"]), r, [p for p in peers if p["config"]["workers"] == r["workers"]])
        for r in runs
    ]
    if len(runs) > 1:
        top = max(done, key=lambda r: r["c32_friendly"]["ok_rps"], default=None)
        rows.append(("best of each", top, peers))
    for label, ours, pool in rows:
        for name, title in (("bentoml", "BentoML"), ("mlflow", "MLflow")):
            best = _best(pool, name)
            peer = "(not run)" if best is None else _peer_rps(best)
            if ours is None or "c32_friendly" not in ours or "not_run" in ours["c32_friendly"]:
                why = "(see above)" if ours is None else _esc(ours.get("not_run", ""))
                lines.append(
                    f"| {label} | {title} | **not run** {why} | {peer} | "
                    f"| >= {RATIO_TARGET:g}x | **not measured** |"
                )
                continue
            c = ours["c32_friendly"]
            mine = f"{_n(c['ok_rps'])}" + (
                "" if label != "best of each" else f" (-w {ours['workers']})"
            )
            if best is None:
                lines.append(f"| {label} | {title} | {mine} | {peer} | | >= {RATIO_TARGET:g}x | |")
                continue
            ratio = c["ok_rps"] / best["c32"]["ok_rps"]
            clean = c["non_2xx"] + c["socket_errors"] == 0
            met = "yes" if ratio >= RATIO_TARGET and clean else "**no**"
            lines.append(
                f"| {label} | {title} | {mine} | {peer} | {ratio:.2f}x | >= {RATIO_TARGET:g}x "
                f"| {met} |"
            )
    ref = my.get("c32_nobatch_friendly")
    if ref and "not_run" not in ref:
        lines += [
            "",
            f"Without batching (`modelyard serve lr@production`, 1 process) modelyard served "
            f"{_n(ref['ok_rps'])} req/s at c=32 (p50 {_ms(ref['p50_ms'])} ms, p99 "
            f"{_ms(ref['p99_ms'])} ms).",
        ]
    return lines


def _peer_rps(p: dict[str, Any]) -> str:
    return f"{_n(p['c32']['ok_rps'])} ({_peer_label(p['config'])})"


def _swap(r: dict[str, Any] | None, s: dict[str, Any]) -> list[str]:
    head = [
        f"**Hot swap**: `--poll-interval {s['poll_interval']}`, c={s['swap_concurrency']}, the "
        f"alias `production` moved {s['moves']} times between versions 1 and 2, one move every "
        f"{s['move_every']:g} s (`ws.registry.set_alias`), from another thread of the benchmark.",
        "",
        "| requests | failed (non-200 or connection error) | distinct versions seen "
        "| moves seen in answers | first answer after a move, median / max ms | p50 / p99 ms "
        "| target | met? |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    if r is None:
        return [*head, "| (skipped) | | | | | | 0 failed, 2 versions | |"]
    if "not_run" in r:
        return [
            *head,
            f"| **not run**: {_esc(r['not_run'])} | | | | | | 0 failed, 2 versions "
            "| **not measured** |",
        ]
    met = "yes" if r["failures"] == 0 and r["distinct_versions"] == 2 else "**no**"
    seen = ", ".join(f"v{k}: {n:,}" for k, n in r["versions"].items())
    return [
        *head,
        f"| {r['requests']:,} | {r['failures']} | {r['distinct_versions']} ({seen}) "
        f"| {r['moves_seen']} of {r['moves']} | {_ms(r['lag_ms_median'])} / "
        f"{_ms(r['lag_ms_max'])} | {_ms(r['p50_ms'])} / {_ms(r['p99_ms'])} "
        f"| 0 failed, 2 versions | {met} |",
    ]
