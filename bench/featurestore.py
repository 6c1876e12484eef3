"""The featurestore blueprint's performance targets (issue 26), measured in one run.

1. Online enrichment: the blueprint's rating model served by ``modelyard serve`` (uvicorn),
   asked with keys only (``user_id``, ``movie_id``: the server reads 7 features of 3 views
   from the online store) against the very same model version registered without a
   feature binding and asked with the 7 values in the body, at c=1, the two sides
   alternating round by round. What enrichment adds = the difference; on SQLite and Redis
   (a private ``redis-server`` on a free port, never a shared one).
2. Push-to-online visibility: ``ws.features.push`` of one row of the streaming view, then
   reads through an online reader until the new value is seen; time from the call to the
   first read that returns it, for ``to="online"`` and ``to="both"`` (the offline Parquet
   file too), alternating rounds; SQLite and Redis.
3. Feature server: 100 entities x 10 features, ``POST /v1/features/{service}`` on
   ``modelyard features serve`` against Feast's ``feast serve`` (``POST
   /get-online-features``; Feast in bench/.venv-feast, see bench/setup_feast.sh) on the same
   rows and the hand-written floor (bench/_bare_features_app.py: one ASGI callable and one
   SQLite query on modelyard's own online table), SQLite online stores, c=1, the three
   sides alternating round by round.

    bash bench/setup_feast.sh    # once
    .venv/bin/python bench/featurestore.py [--rounds 5] [--requests 400] [--pushes 200]
        [--no-redis] [--no-feast] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import modelyard  # noqa: E402
from _common import REPO, machine, percentiles, timed, write_section  # noqa: E402
from _load import sequential  # noqa: E402
from _procs import free_port, running  # noqa: E402

BENCH = REPO / "bench"
FEAST = BENCH / ".venv-feast" / "bin"
HEADER = "## Featurestore blueprint: enrichment, push to online, feature server (issue 26)"
DRIVERS, STAMPS = 10_000, 10
FEATURES = [f"f{i}" for i in range(10)]
ASKED = list(range(5000, 5100))  # the 100 entities of every feature-server request


def load() -> float:
    return round(os.getloadavg()[0], 2)


def env_with(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    return env | more


@contextmanager
def private_redis(tmp: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- 1 and 2: the blueprint's application -------------------------------------------------
def blueprint(folder: Path, online_url: str | None) -> modelyard.Workspace:
    """The blueprint's quickstart in ``folder``, plus the rating model registered again
    without its binding (``rating_plain``), for the side that sends feature values."""
    from modelyard.blueprints import write_template
    from modelyard.blueprints.featurestore import quickstart

    write_template("featurestore", folder)
    config = folder / "modelyard.toml"
    anchor = datetime.now(UTC).strftime("%Y-%m-%d")
    config.write_text(
        config.read_text().replace(
            'name = "featurestore"', f'name = "featurestore"\nanchor = "{anchor}"'
        )
    )
    given = {} if online_url is None else {"online_url": online_url}
    ws = modelyard.Workspace(folder, **given)
    quickstart(ws)
    version = ws.registry.get("rating@production")
    ws.registry.register("rating_plain", f"runs:/{version.run_id}/model")
    return ws


def enrichment_bodies(ws: modelyard.Workspace, pairs: int = 200) -> tuple[list[bytes], list[bytes]]:
    """Keys-only bodies and the same rows with their 7 feature values, for users and movies
    that have online values (rated in the stream's days)."""
    from modelyard.blueprints.featurestore._definitions import (
        DEFAULTS,
        RATING_FEATURES,
        RATING_SERVICE,
    )

    state = json.loads((Path(ws.config.root) / ".modelyard/featurestore/state.json").read_text())
    example = state["stream"]["example"]
    reader = ws.features.online_reader(RATING_SERVICE)
    rng = np.random.default_rng(0)
    users = [example["user_id"]]
    users += [int(u) for u in rng.choice(np.arange(1, 672), size=pairs * 3)]
    movies = [
        int(m)
        for m in rng.choice([1, 2, 3, 10, 31, 47, 50, 110, 260, 296, 318, 356], size=len(users))
    ]
    keys, values = [], []
    for user, movie in zip(users, movies, strict=True):
        got = reader.read({"user_id": [user], "movie_id": [movie]})
        if any(got.status[n][0] != "present" for n in ("ratings_total", "movie_ratings")):
            continue
        row = {n: got.values[n][0] for n in RATING_FEATURES}
        for name, status in ((n, got.status[n][0]) for n in RATING_FEATURES):
            if status != "present":  # the binding's default, as the server would fill it
                row[name] = DEFAULTS[name]
        keys.append(orjson.dumps({"user_id": user, "movie_id": movie}))
        values.append(orjson.dumps(row))
        if len(keys) == pairs:
            break
    return keys, values


def measure_enrichment(
    ws: modelyard.Workspace, online_url: str | None, rounds: int, requests: int, tmp: Path
) -> dict[str, Any]:
    keys, values = enrichment_bodies(ws)
    port = free_port()
    cmd = [sys.executable, "-m", "modelyard", "serve", "rating@production", "rating_plain/1"]
    cmd += ["--port", str(port), "-w", str(ws.config.root)]
    extra = {} if online_url is None else {"MODELYARD_ONLINE_URL": online_url}
    sides: dict[str, list[float]] = {"enriched": [], "plain": []}
    paths = {"enriched": "/v1/models/rating/predict", "plain": "/v1/models/rating_plain/predict"}
    bodies = {"enriched": keys, "plain": values}
    failures = 0
    with running(
        cmd, port, "/readyz", tmp / f"serve-{len(os.listdir(tmp))}.log", env=env_with(**extra)
    ):
        for r in range(rounds):
            order = ["enriched", "plain"] if r % 2 == 0 else ["plain", "enriched"]
            for side in order:
                result = sequential(port, paths[side], bodies[side], requests, warmup=100)
                failures += result.failures
                sides[side] += result.latencies
    out: dict[str, Any] = {side: percentiles(lat) for side, lat in sides.items()}
    # What enrichment does per request, alone: the online read of the rating service (3
    # views, 7 features) for one user and movie, in process.
    from modelyard.blueprints.featurestore._definitions import RATING_SERVICE

    reader = ws.features.online_reader(RATING_SERVICE)
    first = orjson.loads(keys[0])
    one = {"user_id": [first["user_id"]], "movie_id": [first["movie_id"]]}
    out["online_read_in_process"] = timed(lambda: reader.read(one), 2000)
    out["added_p50_ms"] = round(out["enriched"]["p50_ms"] - out["plain"]["p50_ms"], 4)
    out["added_p99_ms"] = round(out["enriched"]["p99_ms"] - out["plain"]["p99_ms"], 4)
    out["failures"] = failures
    out["requests_per_side"] = len(sides["enriched"])
    out["load"] = load()
    return out


def measure_push(ws: modelyard.Workspace, rounds: int, pushes: int) -> dict[str, Any]:
    from modelyard.blueprints.featurestore._definitions import ACTIVITY_VIEW, SHARED

    reader = ws.features.online_reader([SHARED])
    seen: dict[str, list[float]] = {"online": [], "both": []}
    reads: list[int] = []
    value = 10_000
    for r in range(rounds):
        for mode in ("online", "both") if r % 2 == 0 else ("both", "online"):
            for i in range(pushes // rounds):
                user = 1 + (i % 671)
                value += 1
                row = {
                    "user_id": user,
                    "event_timestamp": datetime.now(UTC),
                    "ratings_30d": value,
                    "mean_rating_30d": 3.0,
                }
                t0 = time.perf_counter()
                ws.features.push(ACTIVITY_VIEW, row, to=mode)  # type: ignore[arg-type]
                tries = 0
                while True:
                    tries += 1
                    if reader.read({"user_id": [user]}).values["ratings_30d"][0] == value:
                        break
                seen[mode].append(time.perf_counter() - t0)
                reads.append(tries)
    out: dict[str, Any] = {mode: percentiles(lat) for mode, lat in seen.items()}
    out["reads_until_seen_max"] = max(reads)
    out["pushes_per_mode"] = len(seen["online"])
    out["load"] = load()
    return out


# -- 3: the feature server against feast serve and the floor ------------------------------
def driver_rows(end: datetime) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = DRIVERS * STAMPS
    stamps = end - pd.to_timedelta(rng.integers(1, 20 * 24 * 60, n), unit="min")
    return pd.DataFrame(
        {
            "driver_id": np.repeat(np.arange(DRIVERS), STAMPS),
            "event_timestamp": pd.DatetimeIndex(stamps),
            **{f: rng.random(n) for f in FEATURES},
        }
    )


def feature_server_sides(tmp: Path, rounds: int, requests: int, feast: bool) -> dict[str, Any]:
    from modelyard.backends.online.sqlite import table_name
    from modelyard.features import Entity, FeatureService, FeatureView, FileSource

    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = driver_rows(end)
    parquet = tmp / "drivers.parquet"
    rows.to_parquet(parquet, index=False)
    folder = tmp / "fsrv"
    ws = modelyard.Workspace.init(folder)
    driver = Entity("driver", {"driver_id": "int64"})
    view = FeatureView(
        "driver_stats",
        entity=driver,
        source=FileSource(str(parquet)),
        features=dict.fromkeys(FEATURES, "float64"),
        ttl=timedelta(days=30),
    )
    ws.features.apply([driver, view, FeatureService("driver_service", [view])])
    ws.features.materialize(end - timedelta(days=30), end)
    expected = ws.features.get_online("driver_service", {"driver_id": ASKED})
    online_db = Path(ws.config.root) / ".modelyard" / "online.db"
    ws.close()

    sides: dict[str, dict[str, Any]] = {}
    body = orjson.dumps({"entities": {"driver_id": ASKED}})
    port = free_port()
    sides["modelyard"] = {
        "cmd": [
            sys.executable,
            "-m",
            "modelyard",
            "features",
            "serve",
            "--port",
            str(port),
            "-w",
            str(folder),
        ],
        "port": port,
        "health": "/healthz",
        "path": "/v1/features/driver_service",
        "body": body,
    }
    port = free_port()
    sides["floor"] = {
        "cmd": [
            sys.executable,
            str(BENCH / "_bare_features_app.py"),
            "--db",
            str(online_db),
            "--table",
            table_name("driver_stats__v1"),
            "--features",
            ",".join(FEATURES),
            "--port",
            str(port),
        ],
        "port": port,
        "health": "/healthz",
        "path": "/v1/features/driver_service",
        "body": body,
    }
    feast_info: dict[str, Any] = {}
    if feast and (FEAST / "python").exists():
        cfg = {
            "features_path": str(parquet),
            "repo": str(tmp / "feast_repo"),
            "online_store": "sqlite",
            "end": end.isoformat(),
            "ttl_days": 30,
            "features": FEATURES,
        }
        prep = subprocess.run(
            [str(FEAST / "python"), str(BENCH / "_feast_serve_worker.py"), json.dumps(cfg)],
            capture_output=True,
            text=True,
            cwd=BENCH,
            env=env_with(PYTHONPATH=str(BENCH), FEAST_USAGE="False"),
            timeout=900,
        )
        if prep.returncode != 0:
            raise SystemExit(f"feast setup failed: {prep.stderr[-2000:]}")
        feast_info = json.loads(prep.stdout.strip().splitlines()[-1])
        version = subprocess.run(
            [str(FEAST / "python"), "-c", "import feast; print(feast.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        feast_info["version"] = version
        port = free_port()
        sides["feast"] = {
            "cmd": [
                str(FEAST / "feast"),
                "-c",
                cfg["repo"],
                "serve",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            "port": port,
            "health": "/health",
            "path": "/get-online-features",
            "body": orjson.dumps(
                {
                    "features": [f"driver_stats:{f}" for f in FEATURES],
                    "entities": {"driver_id": ASKED},
                }
            ),
        }
    latencies: dict[str, list[float]] = {name: [] for name in sides}
    failures = dict.fromkeys(sides, 0)
    checked: dict[str, bool] = {}
    envs = {
        "modelyard": env_with(),
        "floor": env_with(),
        "feast": env_with(FEAST_USAGE="False"),
    }
    names = list(sides)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            side = sides[name]
            log = tmp / f"{name}-{r}.log"
            with running(side["cmd"], side["port"], side["health"], log, env=envs[name], cwd=BENCH):
                result = sequential(
                    side["port"], side["path"], [side["body"]], requests, warmup=100
                )
                if name not in checked:
                    checked[name] = _agrees(name, side, expected)
            latencies[name] += result.latencies
            failures[name] += result.failures
    out: dict[str, Any] = {name: percentiles(lat) for name, lat in latencies.items()}
    out["failures"] = failures
    out["answers_agree_with_get_online"] = checked
    out["requests_per_side"] = {name: len(lat) for name, lat in latencies.items()}
    out["feast_setup"] = feast_info
    out["load"] = load()
    return out


def _agrees(name: str, side: dict[str, Any], expected: Any) -> bool:
    """Whether the side's answer holds ``get_online``'s values for the 100 entities."""
    from _procs import post

    status, raw = post(side["port"], side["path"], side["body"])
    if status != 200:
        return False
    body = orjson.loads(raw)
    if name == "feast":
        got = {
            n: r["values"]
            for n, r in zip(body["metadata"]["feature_names"], body["results"], strict=True)
        }
    else:
        got = {n: r["values"] for n, r in zip(body["features"], body["results"], strict=True)}
    return all(
        np.allclose(np.array(got[f], dtype=float), np.array(expected.values[f], dtype=float))
        for f in FEATURES
    )


def report(results: dict[str, Any]) -> str:
    lines = [HEADER, "", "```", f"{' '.join(sys.argv)}", "```", ""]
    lines.append(f"Machine: {json.dumps(results['machine'])}")
    lines.append("")
    lines.append(
        "| back end | enriched p50 / p99 ms | plain p50 / p99 ms | added p50 / p99 ms "
        "| the online read alone, p50 / p99 ms | target | load |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for backend, m in results["enrichment"].items():
        target = 1.0 if backend == "sqlite" else 2.0
        read = m["online_read_in_process"]["p50_ms"]
        verdict = "met" if max(m["added_p50_ms"], read) < target else "MISSED"
        lines.append(
            f"| {backend} | {m['enriched']['p50_ms']:.3f} / {m['enriched']['p99_ms']:.3f} "
            f"| {m['plain']['p50_ms']:.3f} / {m['plain']['p99_ms']:.3f} "
            f"| {m['added_p50_ms']:.3f} / {m['added_p99_ms']:.3f} "
            f"| {m['online_read_in_process']['p50_ms']:.3f} / "
            f"{m['online_read_in_process']['p99_ms']:.3f} | < {target} ms p50: {verdict} "
            f"| {m['load']} |"
        )
    lines.append("")
    lines.append(
        "Enrichment: the end-to-end difference (keys-only requests against the same model "
        "asked with the 7 values) and the online read alone; the target is judged on the "
        "larger. A keys-only body is smaller to parse and validate than one with 7 values, "
        "which can make the difference negative."
    )
    lines.append("")
    lines.append(
        "| back end | push to=online p50 / p99 ms | push to=both p50 / p99 ms "
        "| target (p99 < 10 ms) | load |"
    )
    lines.append("|---|---|---|---|---|")
    for backend, m in results["push"].items():
        verdict = "met" if m["online"]["p99_ms"] < 10 else "MISSED"
        both = "met" if m["both"]["p99_ms"] < 10 else "MISSED"
        lines.append(
            f"| {backend} | {m['online']['p50_ms']:.3f} / {m['online']['p99_ms']:.3f} "
            f"| {m['both']['p50_ms']:.3f} / {m['both']['p99_ms']:.3f} "
            f"| online: {verdict}; both: {both} | {m['load']} |"
        )
    server = results.get("feature_server")
    if server:
        lines.append("")
        lines.append("| feature server, 100 entities x 10 features, c=1 | p50 ms | p99 ms |")
        lines.append("|---|---|---|")
        for name in ("modelyard", "floor", "feast"):
            if name in server and isinstance(server[name], dict) and "p50_ms" in server[name]:
                lines.append(
                    f"| {name} | {server[name]['p50_ms']:.3f} | {server[name]['p99_ms']:.3f} |"
                )
        m = server["modelyard"]
        verdict = "met" if m["p99_ms"] < 2.0 else "MISSED"
        ratios = []
        for peer in ("floor", "feast"):
            if peer in server and isinstance(server[peer], dict) and "p50_ms" in server[peer]:
                ratios.append(
                    f"modelyard / {peer}: p50 {m['p50_ms'] / server[peer]['p50_ms']:.2f}x, "
                    f"p99 {m['p99_ms'] / server[peer]['p99_ms']:.2f}x"
                )
        lines.append("")
        lines.append(
            f"Target p99 < 2 ms (SQLite): {verdict}. {'; '.join(ratios)}. Load {server['load']}."
        )
        lines.append(
            f"Answers agree with get_online: {server['answers_agree_with_get_online']}; "
            f"failures {server['failures']}."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--no-feast", action="store_true")
    parser.add_argument("--only", choices=["enrichment", "push", "server"], default=None)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "enrichment": {}, "push": {}}
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as name:
        tmp = Path(name)
        backends: list[str] = ["sqlite"] + ([] if args.no_redis else ["redis"])
        for backend in backends if args.only in (None, "enrichment", "push") else []:
            with nullcontext(None) if backend == "sqlite" else private_redis(tmp) as url:
                ws = blueprint(tmp / f"app-{backend}", url)
                try:
                    if args.only in (None, "enrichment"):
                        results["enrichment"][backend] = measure_enrichment(
                            ws, url, args.rounds, args.requests, tmp
                        )
                        print(backend, "enrichment", results["enrichment"][backend], flush=True)
                    if args.only in (None, "push"):
                        results["push"][backend] = measure_push(ws, args.rounds, args.pushes)
                        print(backend, "push", results["push"][backend], flush=True)
                finally:
                    ws.close()
        if args.only in (None, "server"):
            results["feature_server"] = feature_server_sides(
                tmp, args.rounds, args.requests, not args.no_feast
            )
            print("feature server", results["feature_server"], flush=True)
    print(json.dumps(results, indent=2, default=str))
    if args.write:
        write_section(BENCH / "RESULTS.md", HEADER, report(results))


if __name__ == "__main__":
    main()
