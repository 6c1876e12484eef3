"""bench/recommendations.py's read-API part: ``GET /v1/recommendations/{user_id}?k=10``.

100,000 users x 20 items (random, seeded) published through ``RecommendationLists.publish``
into a SQLite online store in a temporary workspace and into a private ``redis-server``
on a free port (started here, never a shared one). Per store and ``--workers`` count,
these servers run side by side, and wrk (C, one thread, a random user id per request,
c=16, keep-alive) asks each in turn, the order rotating round by round:

- ``modelyard``: ``modelyard features serve -w WS --port P --workers N``, as a user starts
  it, at log level warning (``MODELYARD_SERVE_LOG_LEVEL=warning``) and at the default,
  info (one JSON line per request, buffered);
- ``modelyard baseline`` (with ``--api-baseline DIR``): the same command with
  ``PYTHONPATH=DIR`` (a ``sitecustomize.py`` there may load an earlier version of the
  route's modules in their place), at log level warning: before and after, side by side;
- ``floor``: bench/_recs_bare_app.py, a bare ASGI app on the same uvicorn doing the same
  two reads (pointer, then the user's row) inline with plain sqlite3 / redis-py and
  answering the same JSON.

Each side's answer for one user is checked once against ``RecommendationLists.read`` in
process. After the rounds each side gets one c=1 run, for context. CPU: the server's
process tree and wrk, per request (and the Redis server's, on Redis). Each run also
records the CPU time the hypervisor took from this VM (steal, ``/proc/stat``): it comes
in stalls of about 100 ms, which show as a p99 of 50-100 ms in the run they fall in.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from _procs import free_port, running, tree_cpu_seconds
from _recs_wrk import wrk_get

BENCH = Path(__file__).resolve().parent
MODEL, NIGHT, VERSION = "recommender", "2026-12-05", 3
CATALOG = 50_000
K = 10
TARGET_P99_MS = 3.0
PREFIX, SUFFIX = "/v1/recommendations/", f"?k={K}"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def env_with(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    return env | more


@contextmanager
def private_redis(tmp: Path) -> Iterator[tuple[str, int]]:
    """A redis-server of our own on a free port: (URL of db 0, its pid)."""
    import redis

    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
        + ["--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_lists(users: int, items: int, seed: int = 1) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    scores = -np.sort(-rng.random((users, items), dtype=np.float32), axis=1)  # best first
    return {
        "users": np.arange(users, dtype=np.int64),
        "items": rng.integers(0, CATALOG, (users, items), dtype=np.int64),
        "scores": scores,
        "popular": rng.choice(CATALOG, items, replace=False).astype(np.int64),
        "popular_scores": np.linspace(0.9, 0.1, items, dtype=np.float32),
    }


def publish(root: Path, online_url: str | None, data: dict[str, Any]) -> tuple[Any, float]:
    """A workspace at ``root`` (on ``online_url``, else its own SQLite file) with the night
    published; (the publication, seconds the publish took)."""
    import modelyard
    from modelyard.serving import RecommendationLists

    given = {} if online_url is None else {"online_url": online_url}
    ws = modelyard.Workspace.init(root, **given)
    try:
        t0 = time.perf_counter()
        published = RecommendationLists(ws.online).publish(
            MODEL,
            NIGHT,
            data["users"],
            data["items"],
            data["scores"],
            popular=(data["popular"], data["popular_scores"]),
            version=VERSION,
        )
        return published, time.perf_counter() - t0
    finally:
        ws.close()


def expected_answer(root: Path, online_url: str | None, user: int) -> dict[str, Any]:
    """``RecommendationLists.read`` in process, in the route's JSON (less the request id)."""
    import modelyard
    from modelyard.serving import RecommendationLists

    given = {} if online_url is None else {"online_url": online_url}
    ws = modelyard.Workspace(root, **given)
    try:
        found = RecommendationLists(ws.online).read(user, k=K)
    finally:
        ws.close()
    p = found.publication
    pairs = zip(found.items, found.scores, strict=True)
    return orjson.loads(
        orjson.dumps(
            {
                "user_id": found.user_id,
                "model": p.model,
                "night": p.night,
                "version": p.version,
                "published_at": p.published_at,
                "fallback": "popularity" if found.fallback else False,
                "items": [{"item_id": i, "score": s} for i, s in pairs],
            },
            option=orjson.OPT_UTC_Z,
        )
    )


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_answer(port: int, user: int, expected: dict[str, Any]) -> str:
    status, headers, body = get(port, f"{PREFIX}{user}{SUFFIX}")
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    got = orjson.loads(body)
    rid = got.pop("request_id", None)
    if rid is None or rid != headers.get("x-request-id"):
        return f"request_id {rid!r} vs header {headers.get('x-request-id')!r}"
    if list(got) != list(expected):
        return f"fields {list(got)} vs {list(expected)}"
    return "same" if got == expected else f"differs: {got} vs {expected}"


def side_commands(
    store: str,
    workers: int,
    root: Path,
    online_url: str | None,
    logs: list[str],
    baseline: str = "",
) -> dict[str, dict[str, Any]]:
    sides: dict[str, dict[str, Any]] = {}
    port = free_port()
    url = online_url or f"sqlite:///{root / '.modelyard' / 'online.db'}"
    sides["floor"] = {
        "cmd": [sys.executable, str(BENCH / "_recs_bare_app.py"), "--online", url]
        + ["--port", str(port), "--workers", str(workers)],
        "port": port,
        "env": env_with(),
    }
    runs = [(f"modelyard, log {level}", level, {}) for level in logs]
    if baseline:  # another version of modelyard's code, loaded through PYTHONPATH
        runs.append(("modelyard baseline, log warning", "warning", {"PYTHONPATH": baseline}))
    for name, level, more in runs:
        port = free_port()
        extra = {"MODELYARD_SERVE_LOG_LEVEL": level, **more}
        if online_url is not None:
            extra["MODELYARD_ONLINE_URL"] = online_url
        sides[name] = {
            "cmd": [sys.executable, "-m", "modelyard", "features", "serve", "-w", str(root)]
            + ["--port", str(port), "--workers", str(workers)],
            "port": port,
            "env": env_with(**extra),
        }
    return sides


def steal_ms() -> float:
    """CPU time the hypervisor took from this VM so far (all CPUs, /proc/stat), in ms."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def one_run(
    side: dict[str, Any], users: int, connections: int, seconds: float, redis_pid: int | None
) -> dict[str, Any]:
    pid = side["proc"].pid
    cpu0 = sum(tree_cpu_seconds(pid).values())
    rcpu0 = sum(tree_cpu_seconds(redis_pid).values()) if redis_pid else 0.0
    stolen = steal_ms()
    got = wrk_get(side["port"], PREFIX, SUFFIX, users, connections, seconds)
    got["steal_ms"] = steal_ms() - stolen
    cpu1 = sum(tree_cpu_seconds(pid).values())
    rcpu1 = sum(tree_cpu_seconds(redis_pid).values()) if redis_pid else 0.0
    n = max(1, got["requests"])
    got["server_cpu_us"] = (cpu1 - cpu0) / n * 1e6
    got["wrk_cpu_us"] = got["wrk_cpu_s"] / n * 1e6
    got["redis_cpu_us"] = (rcpu1 - rcpu0) / n * 1e6 if redis_pid else None
    got["failures"] = got["status"] + got["socket_errors"]
    return got


def measure_group(
    store: str,
    workers: int,
    root: Path,
    online_url: str | None,
    redis_pid: int | None,
    args: Any,
    check: tuple[int, dict[str, Any]],
    logs_dir: Path,
) -> dict[str, Any]:
    """Every side of one store and worker count, running side by side, round by round."""
    sides = side_commands(store, workers, root, online_url, args.api_logs, args.api_baseline)
    names = list(sides)
    out: dict[str, Any] = {"store": store, "workers": workers, "sides": {}, "loads": [load()]}
    with ExitStack() as stack:
        for name, side in sides.items():
            log = logs_dir / f"{store}-w{workers}-{name.replace(' ', '_').replace(',', '')}.log"
            side["proc"] = stack.enter_context(
                running(side["cmd"], side["port"], "/readyz", log, env=side["env"])
            )
            side["log"] = log
        user, expected = check
        for name in names:
            out["sides"][name] = {"check": check_answer(sides[name]["port"], user, expected)}
            out["sides"][name]["check_user"] = user
            # warm-up: caches, pages, the first requests' one-time work
            wrk_get(sides[name]["port"], PREFIX, SUFFIX, args.api_users, 16, args.api_warmup)
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                got = one_run(sides[name], args.api_users, 16, args.api_seconds, redis_pid)
                runs[name].append(got)
            out["loads"].append(load())
            print(
                f"  {store} w{workers} round {r + 1}: "
                + ", ".join(
                    f"{n} {runs[n][-1]['rps']:,.0f}/s p99 {runs[n][-1]['p99_us'] / 1000:.2f} ms "
                    f"max {runs[n][-1]['max_us'] / 1000:.1f} ms steal "
                    f"{runs[n][-1]['steal_ms']:.0f} ms"
                    for n in names
                )
                + f"; load {out['loads'][-1]}",
                flush=True,
            )
        for name in names:
            c1 = one_run(sides[name], args.api_users, 1, args.api_c1_seconds, redis_pid)
            out["sides"][name]["runs"] = runs[name]
            out["sides"][name]["c1"] = c1
        out["loads"].append(load())
    return out


def summarize(side: dict[str, Any]) -> dict[str, Any]:
    runs = side["runs"]

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    return {
        "rps": med("rps"),
        "rps_best": max(r["rps"] for r in runs),
        "p50_ms": med("p50_us") / 1000,
        "p99_ms": med("p99_us") / 1000,
        "p99_best_ms": min(r["p99_us"] for r in runs) / 1000,
        "server_cpu_us": med("server_cpu_us"),
        "wrk_cpu_us": med("wrk_cpu_us"),
        "redis_cpu_us": None if runs[0]["redis_cpu_us"] is None else med("redis_cpu_us"),
        "failures": sum(r["failures"] for r in runs) + side["c1"]["failures"],
        "c1_p50_ms": side["c1"]["p50_us"] / 1000,
        "c1_p99_ms": side["c1"]["p99_us"] / 1000,
        "c1_rps": side["c1"]["rps"],
    }


def report(groups: list[dict[str, Any]], args: Any) -> None:
    print(
        f"\nc=16 closed loop (wrk, 1 thread, keep-alive, a random user of {args.api_users:,} "
        f"per request), {args.api_seconds:g} s a run, {args.rounds} rounds, sides rotating; "
        f"median (best)\n"
    )
    print(
        "| store | workers | side | req/s | p50 ms | p99 ms | p99 < 3 ms | / floor req/s "
        "| server CPU µs/req | c=1 p50 / p99 ms |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for g in groups:
        stats = {name: summarize(side) for name, side in g["sides"].items()}
        floor = stats["floor"]["rps"]
        for name, s in stats.items():
            cpu = f"{s['server_cpu_us']:.0f}"
            if s["redis_cpu_us"] is not None:
                cpu += f" (+{s['redis_cpu_us']:.0f} redis)"
            print(
                f"| {g['store']} | {g['workers']} | {name} "
                f"| {s['rps']:,.0f} ({s['rps_best']:,.0f}) "
                f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} ({s['p99_best_ms']:.2f}) "
                f"| {'met' if s['p99_ms'] < TARGET_P99_MS else 'NOT met'} "
                f"| {s['rps'] / floor:.2f} | {cpu} | {s['c1_p50_ms']:.3f} / {s['c1_p99_ms']:.3f} |"
            )
    print()
    for g in groups:
        print(f"load {g['store']} w{g['workers']}: {' -> '.join(map(str, g['loads']))}")
        for name, side in g["sides"].items():
            s = summarize(side)
            print(
                f"  {name}: answer for user {side['check_user']}: {side['check']}; failures "
                f"{s['failures']}; wrk CPU {s['wrk_cpu_us']:.1f} µs/req; p99 ms by round "
                + ", ".join(
                    f"{r['p99_us'] / 1000:.2f} (steal {r['steal_ms']:.0f} ms)" for r in side["runs"]
                )
            )


def run(args: Any) -> list[dict[str, Any]]:
    print(f"\nread API: load {load()}", flush=True)
    data = make_lists(args.api_users, args.api_items)
    groups: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recs-api-") as tmp_name:
        tmp = Path(tmp_name)
        logs_dir = Path(args.api_logs_dir) if args.api_logs_dir else tmp
        logs_dir.mkdir(parents=True, exist_ok=True)
        check_user = 4242 % args.api_users
        for store in args.api_stores:
            with ExitStack() as stack:
                url, redis_pid = None, None
                if store == "redis":
                    url, redis_pid = stack.enter_context(private_redis(tmp))
                root = tmp / f"ws-{store}"
                published, secs = publish(root, url, data)
                print(
                    f"{store}: published {args.api_users:,} users x {args.api_items} items "
                    f"in {secs:.1f} s (edition {published.edition})",
                    flush=True,
                )
                check = (check_user, expected_answer(root, url, check_user))
                for workers in args.api_workers:
                    groups.append(
                        measure_group(store, workers, root, url, redis_pid, args, check, logs_dir)
                    )
    report(groups, args)
    return groups
