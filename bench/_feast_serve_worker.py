"""Feast side of bench/featurestore.py's feature-server run; runs under bench/.venv-feast.

Reads the settings JSON of bench/_feast_online_worker.py from argv[1], builds the same
minimal repo (FileSource on the Parquet rows, one Entity, one FeatureView, SQLite online
store), materializes it and prints ``{"materialize_s": ...}``. The benchmark then starts
``feast serve`` on that repo and sends it requests. It imports nothing from modelyard.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import datetime, timedelta

from _feast_online_worker import build_repo


def main() -> int:
    cfg = json.loads(sys.argv[1])
    store = build_repo(cfg)
    end = datetime.fromisoformat(cfg["end"])
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Feast prints progress; stdout is JSON
        store.materialize(start_date=end - timedelta(days=cfg["ttl_days"]), end_date=end)
    print(json.dumps({"materialize_s": round(time.perf_counter() - t0, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
