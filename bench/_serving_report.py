"""Markdown for bench/serving.py: the "## Serving against the floor (issue 22)" section.

The targets are issue 22's, as ratios to the bare app measured in the same run; the peers'
ratio (modelyard batched at least 3x the best peer) is issue 5's.
"""

from __future__ import annotations

from typing import Any

HEADER = "## Serving against the floor (issue 22)"
PEER_TARGET = 3.0
P99_TARGET_MS = 25.0


def _ms(v: Any) -> str:
    return "" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _get(out: dict[str, Any], side: str, ep: str, kind: str) -> dict[str, Any] | None:
    """The summary of one measure, or None where it did not run."""
    entry = out["sides"].get(side, {}).get("endpoints", {}).get(ep, {}).get(kind)
    if entry is None or not entry["summary"].get("rounds"):
        return None
    s: dict[str, Any] = entry["summary"]
    return s


def _why(out: dict[str, Any], side: str, ep: str, kind: str) -> str:
    entry = out["sides"].get(side)
    if entry is None:
        return "not selected"
    if "not_run" in entry:
        return _esc(entry["not_run"])
    check = entry.get("checks", {}).get(ep, "")
    if check.startswith("not run"):
        return _esc(check)
    measured = entry.get("endpoints", {}).get(ep, {}).get(kind)
    if measured and measured["summary"].get("errors"):
        return _esc(measured["summary"]["errors"][0])
    return "not measured"


# (measure, numerator side, its endpoint, denominator side, its endpoint, kind, metric, target)
# target: ("<=", x) or (">=", x) on the ratio of medians; None for a reference row.
RATIOS: list[tuple[str, str, str, str, str, str, str, tuple[str, float] | None]] = [
    ("c=1 p50, /v1 predict", "modelyard-default", "friendly", "bare", "friendly", "c1", "p50_ms",
     ("<=", 1.3)),
    ("c=1 p50, OIP infer", "modelyard-default", "oip", "bare", "oip", "c1", "p50_ms",
     ("<=", 1.3)),
    ("c=1 p50, batched vs unbatched", "modelyard-batched", "friendly", "modelyard-unbatched",
     "friendly", "c1", "p50_ms", None),
    ("c=32 req/s, 1 process, unbatched", "modelyard-unbatched", "friendly", "bare", "friendly",
     "c32", "ok_rps", (">=", 0.8)),
    ("c=32 req/s, 1 process, batched", "modelyard-batched", "friendly", "bare", "friendly", "c32",
     "ok_rps", (">=", 1.5)),
    ("c=32 req/s, 1 process, defaults", "modelyard-default", "friendly", "bare", "friendly",
     "c32", "ok_rps", None),
    ("c=32 req/s, OIP, unbatched", "modelyard-unbatched", "oip", "bare", "oip", "c32", "ok_rps",
     (">=", 0.8)),
    ("c=32 req/s, OIP, batched", "modelyard-batched", "oip", "bare", "oip", "c32", "ok_rps",
     (">=", 1.5)),
    ("c=32 req/s, wrk pinned, unbatched", "modelyard-unbatched", "friendly", "bare", "friendly",
     "c32_pinned", "ok_rps", (">=", 0.8)),
    ("c=32 req/s, wrk pinned, batched", "modelyard-batched", "friendly", "bare", "friendly",
     "c32_pinned", "ok_rps", (">=", 1.5)),
    ("2 processes / 1, batched", "modelyard-batched-w2", "friendly", "modelyard-batched",
     "friendly", "c32", "ok_rps", (">=", 1.7)),
    ("2 processes / 1, unbatched", "modelyard-unbatched-w2", "friendly", "modelyard-unbatched",
     "friendly", "c32", "ok_rps", (">=", 1.7)),
    ("2 processes / 1, bare app", "bare-w2", "friendly", "bare", "friendly", "c32", "ok_rps",
     None),
    ("2 processes / 1, batched, wrk pinned", "modelyard-batched-w2", "friendly",
     "modelyard-batched", "friendly", "c32_pinned", "ok_rps", (">=", 1.7)),
    ("2 processes / 1, bare app, wrk pinned", "bare-w2", "friendly", "bare", "friendly",
     "c32_pinned", "ok_rps", None),
]  # fmt: skip


def _ratio_rows(out: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    lines = [
        "| measure | numerator: median (best) | denominator: median (best) "
        "| ratio of medians (of bests) | target | met? |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    verdicts: list[tuple[str, bool]] = []
    cores = len(out["machine"].get("cores") or []) or out["machine"]["nproc"]
    for title, a, ep_a, b, ep_b, kind, metric, target in RATIOS:
        sa, sb = _get(out, a, ep_a, kind), _get(out, b, ep_b, kind)
        want = "reference" if target is None else f"{target[0]} {target[1]:g}x"
        if sa is None or sb is None:
            if a not in out["sides"] or b not in out["sides"]:
                continue
            why = _why(out, a, ep_a, kind) if sa is None else _why(out, b, ep_b, kind)
            lines.append(f"| {title} | **not run**: {why} | | | {want} | |")
            continue
        fmt = _ms if metric == "p50_ms" else _n
        ma, mb = sa[f"{metric}_median"], sb[f"{metric}_median"]
        ba, bb = sa[f"{metric}_best"], sb[f"{metric}_best"]
        ratio, best = ma / mb, ba / bb
        extra = ""
        met = ""
        if target is not None:
            ok = ratio <= target[1] if target[0] == "<=" else ratio >= target[1]
            if title.startswith("c=32") and title.endswith(", batched"):
                p99 = sa["p99_ms_median"]
                extra = f"; p99 {_ms(p99)} ms (< {P99_TARGET_MS:g})"
                ok = ok and p99 < P99_TARGET_MS
            fails = sa.get("non_2xx", 0) + sa.get("socket_errors", 0) + sa.get("failures", 0)
            ok = ok and fails == 0
            pinned_w2 = kind == "c32_pinned" and "2 processes" in title
            if pinned_w2 and cores < 3:
                met = f"n/a: {cores} cores leave the 2 processes 1 core"
            else:
                met = "yes" if ok else "**no**"
                verdicts.append((title, ok))
        lines.append(
            f"| {title} | {a}: {fmt(ma)} ({fmt(ba)}) | {b}: {fmt(mb)} ({fmt(bb)}) "
            f"| {ratio:.2f}x ({best:.2f}x) | {want}{extra} | {met} |"
        )
    return lines, verdicts


def _c1_table(out: dict[str, Any]) -> list[str]:
    lines = [
        "| side | endpoint | p50 ms median (best) | p99 ms median (best) | failures "
        "| load (1 min) each round |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, entry in out["sides"].items():
        if "not_run" in entry:
            lines.append(f"| {entry['label']} | | **not run**: {_esc(entry['not_run'])} | | | |")
            continue
        for ep, m in entry["endpoints"].items():
            s = _get(out, name, ep, "c1")
            if s is None:
                lines.append(f"| {entry['label']} | POST {m['path']} | **not run**: "
                             f"{_why(out, name, ep, 'c1')} | | | |")  # fmt: skip
                continue
            lines.append(
                f"| {entry['label']} | POST {m['path']} | {_ms(s['p50_ms_median'])} "
                f"({_ms(s['p50_ms_best'])}) | {_ms(s['p99_ms_median'])} ({_ms(s['p99_ms_best'])}) "
                f"| {s['failures']} | {' / '.join(f'{v:.2f}' for v in s['load_1min'])} |"
            )
    return lines


def _c32_table(out: dict[str, Any], kind: str) -> list[str]:
    lines = [
        "| side | endpoint | req/s median (best) | p50 ms median | p99 ms median (best) "
        "| non-2xx | socket errors | server CPU | wrk CPU | req/s each round |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, entry in out["sides"].items():
        if "not_run" in entry:
            if kind == "c32":
                lines.append(f"| {entry['label']} | | **not run**: {_esc(entry['not_run'])} "
                             "| | | | | | | |")  # fmt: skip
            continue
        for ep, m in entry["endpoints"].items():
            if kind not in m and not (kind == "c32" and "c1" in m):
                continue
            s = _get(out, name, ep, kind)
            if s is None:
                lines.append(f"| {entry['label']} | POST {m['path']} | **not run**: "
                             f"{_why(out, name, ep, kind)} | | | | | | | |")  # fmt: skip
                continue
            per = s["server_cores_by_process_best"]
            split = f" ({' + '.join(f'{c:.2f}' for c in per)})" if len(per) > 1 else ""
            lines.append(
                f"| {entry['label']} | POST {m['path']} | {_n(s['ok_rps_median'])} "
                f"({_n(s['ok_rps_best'])}) | {_ms(s['p50_ms_median'])} "
                f"| {_ms(s['p99_ms_median'])} ({_ms(s['p99_ms_best'])}) | {s['non_2xx']:,} "
                f"| {s['socket_errors']:,} | {s['server_cores_median']:.2f}{split} "
                f"| {s['wrk_cores_median']:.2f} | {' / '.join(_n(v) for v in s['ok_rps_rounds'])} |"
            )
    return lines


def _peers(out: dict[str, Any]) -> list[str]:
    lines = []
    for w in (1, 2):
        mine = _get(out, "modelyard-batched" + ("-w2" if w == 2 else ""), "friendly", "c32")
        for group, title in (("bentoml", "BentoML"), ("mlflow", "MLflow")):
            best = None
            for name, entry in out["sides"].items():
                if entry["group"] != group or entry["workers"] != w:
                    continue
                s = _get(out, name, group, "c32")
                if s and s["non_2xx"] + s["socket_errors"] == 0:
                    if best is None or s["ok_rps_median"] > best[1]["ok_rps_median"]:
                        best = (entry["label"], s)
            if best is None or mine is None:
                continue
            ratio = mine["ok_rps_median"] / best[1]["ok_rps_median"]
            met = "yes" if ratio >= PEER_TARGET else "**no**"
            lines.append(
                f"| {w} | {title} | {_n(mine['ok_rps_median'])} | {_n(best[1]['ok_rps_median'])} "
                f"({best[0]}) | {ratio:.2f}x | >= {PEER_TARGET:g}x | {met} |"
            )
    if not lines:
        return ["Peers: not measured in this run (their venvs are missing or not selected)."]
    return [
        "**Against the peers** (issue 5's target: modelyard batched at least 3x the best "
        "failure-free peer configuration with as many processes; req/s medians at c=32)",
        "",
        "| processes | peer | modelyard batched | peer | ratio | target | met? |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
        *lines,
    ]


def _swap(r: dict[str, Any] | None, s: dict[str, Any]) -> list[str]:
    if r is None:
        return []
    head = (
        f"**Hot swap**: `--poll-interval {s['poll_interval']}`, c={s['swap_concurrency']}, "
        f"the alias `production` moved {s['moves']} times between versions 1 and 2, one move "
        f"every {s['move_every']:g} s, from another thread of the benchmark: "
    )
    if "not_run" in r:
        return [head + f"**not run**: {_esc(r['not_run'])}."]
    met = "met" if r["failures"] == 0 and r["distinct_versions"] == 2 else "**missed**"
    seen = ", ".join(f"v{k}: {n:,}" for k, n in r["versions"].items())
    return [
        head + f"{r['requests']:,} requests, {r['failures']} failed, versions seen {seen}, "
        f"{r['moves_seen']} of {r['moves']} moves seen in answers (first answer after a move: "
        f"median {_ms(r['lag_ms_median'])} ms, max {_ms(r['lag_ms_max'])} ms); p50 / p99 "
        f"{_ms(r['p50_ms'])} / {_ms(r['p99_ms'])} ms. Target (0 failed, 2 versions): {met}."
    ]


def _checks(out: dict[str, Any]) -> str:
    found = []
    for entry in out["sides"].values():
        for ep, verdict in entry.get("checks", {}).items():
            found.append(f"{entry['label']} {ep}: {verdict}")
    return "; ".join(found) or "none"


def section(out: dict[str, Any]) -> str:
    m, s = out["machine"], out["settings"]
    ratio_lines, verdicts = _ratio_rows(out)
    missed = [t for t, ok in verdicts if not ok]
    summary = (
        f"{len(verdicts) - len(missed)} of {len(verdicts)} targets met"
        + (f"; missed: {', '.join(missed)}" if missed else "")
        + "."
    )
    pinned = m.get("pinned")
    pin_text = (
        f"wrk on core {pinned['wrk']}, every thread of the server on cores {pinned['server']}"
        if pinned
        else "not possible on one core"
    )
    lines = [
        HEADER,
        "",
        "```",
        ".venv/bin/python bench/serving.py           # all sides; peers need setup_*.sh",
        ".venv/bin/python bench/serving.py --only bare,modelyard",
        "```",
        "",
        f"Machine: {m['nproc']} cores (cores used: {m.get('cores')}), {m['platform']}, Python "
        f"{m['python']}; 1-minute load average {out['load_1min_start']} at the start of the "
        f"rounds, {out['load_1min_end']} at the end. modelyard at `{m['modelyard_commit']}`"
        f"{' (tree dirty)' if m['modelyard_tree_dirty'] else ''}; wrk {m['wrk']}; BentoML "
        f"{m.get('bentoml', '-')}, MLflow {m.get('mlflow', '-')}. Raw numbers: "
        "`bench/out/serving.json` (not committed).",
        "",
        f"**Summary**: {summary}",
        "",
        "**How**: every side runs at once; "
        f"{s['rounds']} rounds, and in each every side in turn (the order rotated by one per "
        f"round) runs c=1 ({s['requests']:,} requests on one keep-alive `http.client` "
        f"connection after {s['warmup']} warm-up) then c={s['concurrency']} (`wrk "
        f"-t{s['wrk_threads']} -c{s['concurrency']} -d{s['seconds']:g}s` after "
        f"{s['warmup_seconds']:g} s of warm-up; threads started {s['stagger'] * 1000:g} ms "
        "apart so that the processes of a multi-process server share the connections) on each "
        "endpoint. Medians and bests are over the rounds. The load generator shares the "
        f'server\'s cores ("shared"); in the "wrk pinned" runs {pin_text}. On 2 cores a '
        "pinned 2-process server has 1 core, so its scaling can only be read from the shared "
        "runs, where wrk takes its share of the same 2 cores (its CPU is in the tables).",
        "",
        "The bare app (`bench/_bare_app.py`) is the floor: one pure ASGI callable under the "
        "same uvicorn (uvloop, httptools, access log off), `orjson` both ways, a NumPy row in "
        "signature order, the same pickled model's `predict_proba` called inline, no "
        "validation, metrics or logging. modelyard `defaults` is `modelyard serve "
        "lr@production` with nothing else: the prediction log on and one log line per request "
        "(level info). `unbatched` adds `--max-batch-size 1`, `batched` `--max-batch-size 64 "
        "--max-latency-ms 2`. Answers to row 0 against the model in this process: "
        f"{_checks(out)}.",
        "",
        "**Targets** (issue 22; ratios of medians over the rounds, bests in brackets)",
        "",
        *ratio_lines,
        "",
        "**Concurrency 1** (single-row JSON, ms as the client sees it)",
        "",
        *_c1_table(out),
        "",
        f"**Concurrency {s['concurrency']}, load generator sharing the cores** (req/s counts "
        "2xx answers; non-2xx and socket errors summed over the rounds; CPU in cores = CPU "
        "seconds / wall seconds, median over the rounds, by process in the best round)",
        "",
        *_c32_table(out, "c32"),
    ]
    eps = [ep for e in out["sides"].values() for ep in e.get("endpoints", {}).values()]
    if any("c32_pinned" in ep for ep in eps):
        lines += [
            "",
            f"**Concurrency {s['concurrency']}, wrk pinned** ({pin_text})",
            "",
            *_c32_table(out, "c32_pinned"),
        ]
    lines += ["", *_peers(out), "", *_swap(out.get("hot_swap"), s)]
    if out.get("notes"):
        lines += ["", "Notes:", "", *(f"- {n}" for n in out["notes"])]
    return "\n".join(lines).rstrip("\n") + "\n"
