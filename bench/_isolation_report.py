"""Markdown for bench/serving_isolation.py: one section of bench/RESULTS.md per measure."""

from __future__ import annotations

from typing import Any

HEADERS = {
    "isolation": "## Serving isolation: a slow canary (issue 22)",
    "shedding": "## Serving load shedding (issue 22)",
    "soak": "## Serving soak (issue 22)",
}


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _head(key: str, out: dict[str, Any], command: str) -> list[str]:
    m = out["machine"]
    return [
        HEADERS[key],
        "",
        f"```\n.venv/bin/python bench/serving_isolation.py --only {command}\n```",
        "",
        f"Machine: {m['nproc']} cores shared by the server and the load generator, "
        f"{m['platform']}, Python {m['python']}; modelyard at `{m['modelyard_commit']}`"
        f"{' (tree dirty)' if m['modelyard_tree_dirty'] else ''}.",
        "",
    ]


def isolation_section(out: dict[str, Any]) -> str:
    r, s = out["isolation"], out["settings"]
    lines = _head("isolation", out, "isolation")
    if "not_run" in r:
        return "\n".join([*lines, f"**Not run**: {r['not_run']}."]) + "\n"
    met = "met" if r["ratio"] is not None and r["ratio"] >= 0.9 else "**missed**"
    med = r["champion_rps_median"]
    lines += [
        f"Model `lr`: champion v1 (`production`, the LogisticRegression of bench/serving.py), "
        f"candidate v2 (`staging`, the same answers after "
        f"`time.sleep({s['candidate_ms'] / 1000:g})`). Two servers at once, `modelyard serve "
        "--spec` (`max_queue = 32`) with and without `ab = "
        f'{{ candidate = "staging", key = "f0", percent = {s["percent"]:g} }}`; '
        f"{s['rounds']} rounds, each {s['seconds']:g} s of closed-loop c={s['concurrency']} "
        "(`_load.concurrent`, asyncio, keep-alive) with bodies keyed for the champion against "
        "each, alternating which goes first; against both servers an open-loop stream "
        f"(`_open_loop.py`) of bodies keyed for the candidate runs at the same time, at "
        f"{s['percent']:g}% of the traffic ({r['candidate_rate']:,.0f} req/s, from a first "
        "look at the alone server's rate): the split server sends it to the candidate, the "
        "alone server answers it with the champion. A split by key, "
        "because with a random canary and a closed loop every 200 ms candidate answer holds "
        "one of the client's connections: the client would starve the champion, not the "
        "server. Variants counted from each "
        f"answer's `variant` (the champion's is `{r['champion_label']}`). 1-minute load "
        f"average {r['load_1min_start']} at the start, {r['load_1min_end']} at the end.",
        "",
        f"**Champion answers/s with the candidate / without: {_f(r['ratio'])}** (medians "
        f"{med['with_candidate']:,.0f} / {med['alone']:,.0f}"
        f"; target at least 0.9: {met}).",
        "",
        "| server | round | champion answers/s | all answers/s | answers by variant "
        "| failures | p50 / p99 ms (all answers) | candidate stream: req/s, answers by status |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for name, runs in r["runs"].items():
        for k, run in enumerate(runs, 1):
            by = ", ".join(f"{v}: {n:,}" for v, n in run["variants"].items())
            lines.append(
                f"| {name} | {k} | {run['champion_rps']:,.0f} | {run['all_rps']:,.0f} | {by} "
                f"| {run['failures']} | {_f(run['p50_ms'])} / {_f(run['p99_ms'])} "
                f"| {_stream(run.get('candidate_stream') or {})} |"
            )
    lines += [
        "",
        "The client is Python on the same 2 cores: its share of the CPU is the same for both "
        "servers, so the ratio holds though the absolute rates are lower than wrk's.",
    ]
    return "\n".join(lines) + "\n"


def _stream(stream: dict[str, Any]) -> str:
    if not stream:
        return "none"
    statuses = ", ".join(f"{k}: {n:,}" for k, n in sorted(stream.get("statuses", {}).items()))
    return f"{stream['rate']:,.0f} req/s; {statuses}; {stream.get('timeouts', 0)} timed out"


def shedding_section(out: dict[str, Any]) -> str:
    r, s = out["shedding"], out["settings"]
    lines = _head("shedding", out, "shedding")
    cap = r.get("capacity") or {}
    if cap:
        lines.append(
            f"Capacity: `modelyard serve lr@production` (defaults), `wrk -t2 -c32 "
            f"-d{s['seconds']}s`: {cap['rps']:,.0f} req/s (p99 {_f(cap['p99_ms'])} ms, load "
            f"{cap['load_1min']})."
        )
        lines.append("")
    if "not_run" in r:
        return "\n".join([*lines, f"**Not run**: {r['not_run']}."]) + "\n"
    acc, ref = r["accepted"], r["refused_all"]
    ok_acc = acc["p99_ms"] is not None and acc["p99_ms"] < s["slo_ms"]
    ok_ref = ref["p99_ms"] is None or ref["p99_ms"] <= 5
    lines += [
        f"Open loop at twice capacity, {r['rate']:,.0f} req/s for {r['seconds']} s "
        f"(`bench/_open_loop.py`: uvloop, 256 keep-alive connections opened first, each "
        f"request due in a 1 ms tick sent on an idle one or a new one, waiting at most "
        f"{s['client_timeout']:g} s; the client used {r['client_cores']:.2f} cores) against "
        f"`modelyard serve lr@production --max-queue {r['max_queue']}`. Q = capacity x SLO / 4 "
        f"= {cap['rps']:,.0f} x {s['slo_ms']:g} ms / 4 (the README's sizing rule): a request "
        "admitted behind Q others waits about Q / capacity on average, a quarter of the SLO; "
        "under overload the server answers less than its capacity, since refusing costs too, "
        "and the p99 wait is about twice the mean. 1-minute load "
        f"{r['load_1min']} at the start, "
        f"{r['load_1min_end']} at the end.",
        "",
        "| measure | value | target | met? |",
        "| --- | --- | --- | --- |",
        f"| scheduled / sent (connections opened) | {r['scheduled']:,} / {r['sent']:,} "
        f"({r['connections']:,}) | | |",
        f"| answers by status | {', '.join(f'{k}: {v:,}' for k, v in r['statuses'].items())} | | |",
        f"| accepted p50 / p99 ms (from the write) | {_f(acc['p50_ms'])} / {_f(acc['p99_ms'])} "
        f"| p99 < {s['slo_ms']:g} | {'yes' if ok_acc else '**no**'} |",
        f"| accepted p50 / p99 ms (from the scheduled time) | "
        f"{_f(acc['from_schedule']['p50_ms'])} / {_f(acc['from_schedule']['p99_ms'])} | | |",
        f"| refused (non-2xx) p50 / p99 ms | {_f(ref['p50_ms'])} / {_f(ref['p99_ms'])} "
        f"| p99 <= 5 | {'yes' if ok_ref else '**no**'} |",
        f"| timed out (no answer in {s['client_timeout']:g} s) | {r['timeouts']} | 0 "
        f"| {'yes' if r['timeouts'] == 0 else '**no**'} |",
        f"| other client errors | {r['errors'] or 'none'} | | |",
        f"| client lag p50 / p99 ms (write minus schedule) | {_f(r['client_lag']['p50_ms'])} / "
        f"{_f(r['client_lag']['p99_ms'])} | | |",
        f"| `modelyard_requests_shed_total` | {r['shed_metric'] or 'absent'} | | |",
    ]
    return "\n".join(lines) + "\n"


def soak_section(out: dict[str, Any]) -> str:
    r = out["soak"]
    lines = _head("soak", out, "soak")
    if "not_run" in r:
        return "\n".join([*lines, f"**Not run**: {r['not_run']}."]) + "\n"
    growth = r["rss_growth"]
    ok_rss = growth is not None and growth < 0.05
    p99s = [c["p99_ms"] for c in r["chunks"] if c["p99_ms"] is not None]
    lines += [
        f"`modelyard serve lr@production` (defaults: prediction log and request log on), "
        f"an open loop at {r['rate']:,.0f} req/s ({r['share']:g} of the "
        f"{r['capacity']['rps']:,.0f} req/s measured at c=32) for {r['minutes']:g} "
        f"minute{'' if r['minutes'] == 1 else 's'}; RSS of the server's processes every 2 s. "
        f"1-minute load {r['load_1min']} at the start, {r['load_1min_end']} at the end.",
        "",
        "| measure | value | target | met? |",
        "| --- | --- | --- | --- |",
        f"| requests answered | {r['requests']:,} | | |",
        f"| 5xx | {r['five_xx']} | 0 | {'yes' if r['five_xx'] == 0 else '**no**'} |",
        f"| answers by status | {', '.join(f'{k}: {v:,}' for k, v in r['statuses'].items())} | | |",
        f"| timed out (no answer in {out['settings']['client_timeout']:g} s) "
        f"| {r['timeouts']:,} | 0 | {'yes' if r['timeouts'] == 0 else '**no**'} |",
        f"| client errors | {r['errors'] or 'none'} | | |",
        f"| RSS, first / last {r['window_s']:g} s (mean) | {r['rss_first_kb'] / 1024:,.1f} / "
        f"{r['rss_last_kb'] / 1024:,.1f} MiB | | |",
        f"| RSS growth | {_f(None if growth is None else growth * 100, 2)}% | < 5% "
        f"| {'yes' if ok_rss else '**no**'} |",
        f"| p99 ms of each {min(30, r['minutes'] * 15):g} s chunk, min / max | "
        f"{_f(min(p99s)) if p99s else '-'} / {_f(max(p99s)) if p99s else '-'} | | |",
    ]
    return "\n".join(lines) + "\n"
