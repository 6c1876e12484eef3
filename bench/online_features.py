"""Online feature reads and materialization, against the thinnest hand-written reference.

10,000 drivers x 10 timestamps, 10 float features, ttl 30 days. Times, in-process:
- modelyard ``online_reader(...).read(keys)`` for 1 and 100 entities (values, event times
  and status for 10 features), on SQLite and on Redis;
- the same rows read by hand: a ``sqlite3`` primary-key lookup (``IN (...)`` for 100) of
  the stored bytes, and a redis-py ``HMGET`` (no decoding: the floor under any store);
- ``materialize`` of the 10,000 drivers;
- Feast (bench/.venv-feast, see bench/setup_feast.sh) on the same rows, written to Parquet:
  ``materialize`` and ``get_online_features(...).to_dict()`` for the same shapes, on its
  SQLite and Redis online stores, each in its own process (bench/_feast_online_worker.py).

    .venv/bin/python bench/online_features.py [--reads 5000] [--no-redis] [--no-feast]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import modelyard
from _common import timed
from modelyard.features import Entity, FeatureService, FeatureView, FrameSource

DRIVERS = 10_000
STAMPS = 10
FEATURES = [f"f{i}" for i in range(10)]
END = datetime(2024, 2, 1, tzinfo=UTC)
BENCH = Path(__file__).resolve().parent
FEAST_PYTHON = BENCH / ".venv-feast" / "bin" / "python"
FEAST_REDIS = "127.0.0.1:6379,db=13"


def feature_rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = DRIVERS * STAMPS
    stamps = END - pd.to_timedelta(rng.integers(1, 20 * 24 * 60, n), unit="min")
    return pd.DataFrame(
        {
            "driver_id": np.repeat(np.arange(DRIVERS), STAMPS),
            "event_timestamp": pd.DatetimeIndex(stamps),
            **{f: rng.random(n) for f in FEATURES},
        }
    )


def bench_store(url: str, folder: Path, frame: pd.DataFrame, reads: int) -> dict[str, Any]:
    ws = modelyard.Workspace.init(folder, online_url=url)
    driver = Entity("driver", {"driver_id": "int64"})
    view = FeatureView(
        "driver_stats",
        entity=driver,
        source=FrameSource(frame),
        features={f: "float64" for f in FEATURES},
        ttl=timedelta(days=30),
    )
    ws.features.apply([driver, view, FeatureService("svc", [view])])
    ws.online.drop("driver_stats__v1")
    t0 = time.perf_counter()
    [result] = ws.features.materialize(END - timedelta(days=30), END)
    materialize_s = time.perf_counter() - t0
    reader = ws.features.online_reader("svc")
    one = {"driver_id": [4242]}
    hundred = {"driver_id": list(range(5000, 5100))}
    assert reader.read(one, at=END).status["f0"] == ["present"]
    out: dict[str, Any] = {
        "materialize_s": round(materialize_s, 3),
        "materialized_rows": result.rows,
        "modelyard_1": timed(lambda: reader.read(one, at=END), reads),
        "modelyard_100": timed(lambda: reader.read(hundred, at=END), reads),
    }
    keys_1 = [b"[4242]"]
    keys_100 = [f"[{i}]".encode() for i in range(5000, 5100)]
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        table = '"fv_driver_stats__v1"'
        marks = ",".join("?" * 100)
        out["plain_sqlite3_1"] = timed(
            lambda: conn.execute(f"SELECT ts, v FROM {table} WHERE k = ?", keys_1).fetchall(),
            reads,
        )
        out["plain_sqlite3_100"] = timed(
            lambda: conn.execute(
                f"SELECT k, ts, v FROM {table} WHERE k IN ({marks})", keys_100
            ).fetchall(),
            reads,
        )
    else:
        import redis

        client = redis.Redis.from_url(url)
        name = "modelyard:fv:driver_stats__v1"
        out["plain_redis_1"] = timed(lambda: client.hmget(name, keys_1), reads)
        out["plain_redis_100"] = timed(lambda: client.hmget(name, keys_100), reads)
        ws.online.drop("driver_stats__v1")
    ws.close()
    return out


def bench_feast(
    online_store: str, parquet: Path, folder: Path, frame: pd.DataFrame, reads: int
) -> dict[str, Any]:
    """Feast 0.67 on the same rows, in its own venv and process."""
    cfg = {
        "features_path": str(parquet),
        "repo": str(folder),
        "online_store": online_store,
        "redis_connection": FEAST_REDIS,
        "end": END.isoformat(),
        "ttl_days": 30,
        "features": FEATURES,
        "reads": reads,
    }
    proc = subprocess.run(
        [str(FEAST_PYTHON), str(BENCH / "_feast_online_worker.py"), json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"Feast worker ({online_store}) failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Feast must have materialized what it reads: the latest in-ttl row per driver.
    latest = frame[frame.driver_id == 4242].sort_values("event_timestamp").iloc[-1]
    assert out.pop("value_4242") == {f: float(latest[f]) for f in FEATURES}, "Feast value"
    assert out["missing_values_100"] == 0, "Feast missed values"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--no-redis", dest="redis", action="store_false")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--no-feast", dest="feast", action="store_false")
    args = parser.parse_args()
    frame = feature_rows()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = bench_store(
            f"sqlite:///{Path(tmp) / 'online.db'}", Path(tmp) / "ws1", frame, args.reads
        )
        if args.redis:
            results["redis"] = bench_store(args.redis_url, Path(tmp) / "ws2", frame, args.reads)
        if args.feast:
            parquet = Path(tmp) / "features.parquet"
            frame.to_parquet(parquet, index=False)
            for name in results:
                feast = bench_feast(name, parquet, Path(tmp) / f"feast-{name}", frame, args.reads)
                results[name]["feast"] = feast
                mine = results[name]
                results[name]["ratios_feast_over_modelyard"] = {
                    "p99_1": round(feast["feast_1"]["p99_ms"] / mine["modelyard_1"]["p99_ms"], 1),
                    "p99_100": round(
                        feast["feast_100"]["p99_ms"] / mine["modelyard_100"]["p99_ms"], 1
                    ),
                    "materialize": round(feast["materialize_s"] / mine["materialize_s"], 1),
                }
    out = Path(__file__).with_name("out")
    out.mkdir(exist_ok=True)
    (out / "online-features.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
