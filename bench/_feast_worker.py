"""Feast side of bench/features.py; runs under bench/.venv-feast/bin/python.

Reads one JSON object of settings from argv[1]: the feature and entity Parquet files, a
folder for the Feast repo, the result path and the repeat count. Builds a minimal Feast
repo there (FileSource on the same Parquet, an Entity, a FeatureView with the same ttl,
offline store type duckdb), then times ``get_historical_features(...).to_arrow()`` and
prints one JSON object. It imports nothing from modelyard, so Feast never enters the
package's venv.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import feast  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType  # noqa: E402
from feast.types import Float64, Int64  # noqa: E402

FEATURE_STORE_YAML = """\
project: bench
provider: local
registry: {registry}
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: {online}
entity_key_serialization_version: 3
"""


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build_repo(cfg: dict[str, Any]) -> FeatureStore:
    repo = Path(cfg["repo"])
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        FEATURE_STORE_YAML.format(registry=repo / "registry.db", online=repo / "online.db")
    )
    store = FeatureStore(repo_path=str(repo))
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="driver_stats_source",
        path=cfg["features_path"],
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
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
    )
    store.apply([driver, view])
    return store


def main() -> int:
    cfg = json.loads(sys.argv[1])
    store = build_repo(cfg)
    refs = [f"driver_stats:{f}" for f in cfg["features"]]
    # Feast takes the entity rows as a pandas DataFrame; reading them is not timed.
    entities = pq.read_table(cfg["entities_path"]).to_pandas()
    rss_before = status_kb("VmRSS")
    times, cpu = [], []
    result = None
    for _ in range(cfg["repeats"]):
        frame = entities.copy()  # Feast rewrites the timestamp column in place
        del result
        t0, c0 = time.perf_counter(), time.process_time()
        result = store.get_historical_features(entity_df=frame, features=refs).to_arrow()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert result is not None
    pq.write_table(result, cfg["result_path"])
    print(
        json.dumps(
            {
                "times_s": times,
                "cpu_s": cpu,
                "rows": result.num_rows,
                "columns": result.column_names,
                "rss_before_join_kb": rss_before,
                "vmhwm_kb": status_kb("VmHWM"),
                "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "feast_version": feast.__version__,
                "pandas_version": pd.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
