"""Dashboard pages at scale: server-side render time of every page, and of the runs filter.

Seeds a workspace with ``--runs`` runs (10,000: params, a 20-step loss curve and a final
accuracy each), ``--models`` models (50, three versions each, an alias) and 30 days of
monitoring series (hourly drift per column, drift share and quality for each model),
through the same API a user calls. Then renders each page ``--loads`` times in process
(httpx's ASGI transport: server time only, no network or browser) and reports the
median and the best, with the load average. Targets: every page under 300 ms (median),
the runs filter under 100 ms.

    .venv/bin/python bench/ui.py [--runs 10000] [--models 50] [--loads 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from _common import machine

TRAFFIC = 100_000


def seed(root: Path, runs: int, models: int) -> list[str]:
    import modelyard
    from modelyard.monitoring import record_metrics

    def double(frame: pd.DataFrame) -> pd.Series:
        return frame["a"] * 2

    started = time.perf_counter()
    ids = []
    with modelyard.Workspace.init(root) as ws:
        logged = None
        for i in range(runs):
            params = {"C": 10 ** ((i % 7) - 3), "penalty": ("l1", "l2")[i % 2], "seed": i}
            with ws.start_run(f"run-{i}", params=params) as run:
                for step in range(20):
                    run.log_metric("loss", 1.0 / (step + 1) + (i % 13) / 100, step=step)
                run.log_metric("accuracy", 0.7 + (i % 29) / 100)
                if logged is None:
                    logged = ws.registry.log_model(
                        run, double, input_example=pd.DataFrame({"a": [1.0]})
                    )
                ids.append(run.run_id)
        assert logged is not None
        now = datetime.now(UTC)
        for m in range(models):
            name = f"model-{m}"
            for _ in range(3):
                version = ws.registry.register(name, logged).version
            ws.registry.set_alias(name, "production", version)
            for hour in range(0, 30 * 24, 6 if m else 1):  # model-0 hourly, the rest 6-hourly
                values = {f"drift.psi.col{c}": 0.01 * ((hour + c) % 17) for c in range(8)}
                values["drift.share"] = 0.1
                values["quality.roc_auc"] = 0.9
                record_metrics(
                    ws.metadata, name, values, window=timedelta(hours=1), version=3,
                    at=now - timedelta(hours=30 * 24 - hour),
                )  # fmt: skip
        seed_traffic(ws, root)
    print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    return ids


def seed_traffic(ws: Any, root: Path) -> None:
    """A model with a reference profile and ``TRAFFIC`` rows of logged predictions in the
    last hour (scored in one batch, as ``modelyard score`` logs them)."""
    import numpy as np

    from modelyard.serving import score

    def double(frame: pd.DataFrame) -> pd.Series:
        return (frame["a"] * 2).rename("doubled")

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 5_000), "b": rng.choice(list("xyz"), 5_000)})
    with ws.start_run("scored") as run:
        logged = ws.registry.log_model(
            run, double, input_example=reference.head(5), reference_data=reference
        )
    ws.registry.set_alias("scored", "production", ws.registry.register("scored", logged).version)
    shifted = {"a": rng.normal(0.3, 1, TRAFFIC), "b": rng.choice(list("xyzw"), TRAFFIC)}
    current = pd.DataFrame(shifted)
    current.to_parquet(root / "traffic.parquet")
    score(
        ws.registry, "scored@production", root / "traffic.parquet", root / "scored.parquet",
        prediction_log=ws.predictions,
    )  # fmt: skip


async def measure(root: Path, ids: list[str], loads: int) -> dict[str, dict[str, float]]:
    import modelyard
    from modelyard.ui import create_ui_app

    ws = modelyard.Workspace(root)
    app = create_ui_app(ws)
    pages = {
        "runs": "/ui/runs",
        "runs filter": "/ui/runs?filter=metrics.accuracy > 0.95 and params.penalty = 'l2'",
        "runs order": "/ui/runs?order=metrics.accuracy desc",
        "run": f"/ui/runs/{ids[-1]}",
        "compare 5": "/ui/runs/compare?" + "&".join(f"run={i}" for i in ids[:5]),
        "models": "/ui/models",
        "model": "/ui/models/model-0",
        "monitoring": "/ui/monitoring",
        "monitoring model (hourly, 30 d)": "/ui/monitoring/model-0",
        "jobs": "/ui/jobs",
        "features": "/ui/features",
        f"serving, from the prediction log ({TRAFFIC:,} rows in the hour)": "/ui/serving",
        f"one model's monitoring with traffic ({TRAFFIC:,} rows)": "/ui/monitoring/scored",
        f"a column's histogram ({TRAFFIC:,} rows)": "/ui/monitoring/scored/columns/a",
        "quality (no labels yet)": "/ui/monitoring/scored/quality",
    }
    results: dict[str, dict[str, float]] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for name, path in pages.items():
            times = []
            for _ in range(loads):
                t0 = time.perf_counter()
                r = await client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
            results[name] = {
                "median_ms": round(statistics.median(times), 1),
                "best_ms": round(min(times), 1),
                "bytes": len(r.content),
            }
            print(name, results[name], flush=True)
    results.update(await measure_server(ws, loads))
    ws.close()
    return results


async def measure_server(ws: Any, loads: int) -> dict[str, dict[str, float]]:
    """The Serving panel on the model server: its own metrics, after 2,000 predictions."""
    import functools

    from modelyard.serving import create_app
    from modelyard.ui import mount_on_server

    app = create_app(
        ws.registry, ["scored@production"], poll_interval_s=0,
        extend=[functools.partial(mount_on_server, ws=ws)],
    )  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            for i in range(2_000):
                r = await c.post("/v1/models/scored/predict", json={"a": float(i), "b": "x"})
                assert r.status_code == 200, r.text
            for name, path in {
                "serving panel on the server (live metrics)": "/ui/serving/panel",
                "model page on the server (signed-in viewer)": "/ui/models/scored",
            }.items():
                times = []
                for _ in range(loads):
                    t0 = time.perf_counter()
                    r = await c.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                assert 'data-model="scored"' in r.text or "/serving" not in path, r.text
                results[name] = {
                    "median_ms": round(statistics.median(times), 1),
                    "best_ms": round(min(times), 1),
                    "bytes": len(r.content),
                }
                print(name, results[name], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--loads", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        ids = seed(root, args.runs, args.models)
        load_start = os.getloadavg()[0]
        results = asyncio.run(measure(root, ids, args.loads))
        load_end = os.getloadavg()[0]
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    combined = {
        "machine": machine(),
        "runs": args.runs,
        "models": args.models,
        "load_1min_start": round(load_start, 2),
        "load_1min_end": round(load_end, 2),
        "pages": results,
    }
    (out / "ui.json").write_text(json.dumps(combined, indent=2))
    print(json.dumps(combined, indent=2))


if __name__ == "__main__":
    main()
