"""Feast side of bench/online_features.py; runs under bench/.venv-feast/bin/python.

Reads one JSON object of settings from argv[1]: the Parquet file of feature rows, the
folder for the Feast repo, the online store ("sqlite" or "redis"), the Redis connection
string, the end of the materialization window, the ttl, the feature names and the number
of timed reads. Builds a minimal Feast repo there (FileSource on the Parquet, an Entity,
a FeatureView with the same ttl and online=True, offline store type duckdb), times
``store.materialize(end - ttl, end)``, then times
``store.get_online_features(...).to_dict()`` for 1 and 100 entities (200 warm-up reads,
then the timed ones) and prints one JSON object. It imports nothing from modelyard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import feast  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType  # noqa: E402
from feast.types import Float64, Int64  # noqa: E402

from _common import timed  # noqa: E402

FEATURE_STORE_YAML = """\
project: bench
provider: local
registry: {registry}
offline_store:
  type: duckdb
online_store:
{online}
entity_key_serialization_version: 3
"""


def build_repo(cfg: dict[str, Any]) -> FeatureStore:
    repo = Path(cfg["repo"])
    repo.mkdir(parents=True, exist_ok=True)
    if cfg["online_store"] == "redis":
        import redis

        host, _, rest = cfg["redis_connection"].partition(":")
        port, _, opts = rest.partition(",")
        db = int(dict(o.split("=", 1) for o in opts.split(",") if o).get("db", 0))
        redis.Redis(host=host, port=int(port), db=db).flushdb()
        online = f'  type: redis\n  connection_string: "{cfg["redis_connection"]}"'
    else:
        online = f"  type: sqlite\n  path: {repo / 'online.db'}"
    (repo / "feature_store.yaml").write_text(
        FEATURE_STORE_YAML.format(registry=repo / "registry.db", online=online)
    )
    store = FeatureStore(repo_path=str(repo))
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="driver_stats_source", path=cfg["features_path"], timestamp_field="event_timestamp"
    )
    view = FeatureView(
        name="driver_stats",
        entities=[driver],
        ttl=timedelta(days=cfg["ttl_days"]),
        schema=[
            Field(name="driver_id", dtype=Int64),
            *(Field(name=f, dtype=Float64) for f in cfg["features"]),
        ],
        source=source,
        online=True,
    )
    store.apply([driver, view])
    return store


def main() -> int:
    cfg = json.loads(sys.argv[1])
    store = build_repo(cfg)
    end = datetime.fromisoformat(cfg["end"])
    refs = [f"driver_stats:{f}" for f in cfg["features"]]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Feast prints progress; stdout is JSON
        store.materialize(start_date=end - timedelta(days=cfg["ttl_days"]), end_date=end)
    materialize_s = time.perf_counter() - t0
    one = [{"driver_id": 4242}]
    hundred = [{"driver_id": i} for i in range(5000, 5100)]

    def read(rows: list[dict[str, int]]) -> dict[str, Any]:
        return store.get_online_features(features=refs, entity_rows=rows).to_dict()

    # Check that materialization wrote what the reads need: every driver in range has a
    # value for every feature, and driver 4242's matches the expected latest row.
    got_100 = read(hundred)
    missing = sum(v is None for f in cfg["features"] for v in got_100[f])
    got_1 = read(one)
    out: dict[str, Any] = {
        "feast_version": feast.__version__,
        "online_store": cfg["online_store"],
        "offline_store": "duckdb",
        "materialize_s": round(materialize_s, 3),
        "missing_values_100": missing,
        "value_4242": {f: got_1[f][0] for f in cfg["features"]},
        "feast_1": timed(lambda: read(one), cfg["reads"]),
        "feast_100": timed(lambda: read(hundred), cfg["reads"]),
    }
    if cfg["online_store"] == "redis":
        import redis

        host, _, rest = cfg["redis_connection"].partition(":")
        port, _, opts = rest.partition(",")
        db = int(dict(o.split("=", 1) for o in opts.split(",") if o).get("db", 0))
        redis.Redis(host=host, port=int(port), db=db).flushdb()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
