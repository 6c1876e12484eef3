"""modelyard's own client, timed: N runs of 10 params and 20 metrics through ``ws.start_run``,
to a workspace whose metadata.url is the database itself or the team server in front of it.

Run by bench/tracking_server.py with modelyard's python: ``_ts_own_client.py JSON`` prints
one JSON line (runs/s, the runs stored). Each thread starts its runs one after another,
as a training script does; the Workspace (and so its connection pool or HTTP client) is
shared by the threads.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time

import modelyard


def main() -> None:
    cfg = json.loads(sys.argv[1])
    folder = tempfile.mkdtemp(prefix="bench-own-")
    ws = modelyard.Workspace(folder, metadata_url=cfg["url"], tracking_experiment=cfg["experiment"])
    params = {f"p{i}": i for i in range(10)}
    metrics = {f"m{i}": i / 20 for i in range(20)}
    threads, runs = cfg["threads"], cfg["runs"]
    ids: list[str] = []

    def work(n: int) -> None:
        for k in range(n):
            with ws.start_run(f"own-{k}", params=params) as run:
                run.log_metrics(metrics)
            ids.append(run.run_id)

    with ws.start_run("warm-up") as run:  # connection pool, imports, the experiment's row
        run.log_metrics(metrics)
    share = [runs // threads + (1 if t < runs % threads else 0) for t in range(threads)]
    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(n,)) for n in share]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - started
    sample = ws.runs.get(ids[-1])
    print(
        json.dumps(
            {
                "mode": cfg["mode"],
                "runs": runs,
                "threads": threads,
                "seconds": seconds,
                "runs_per_s": runs / seconds,
                "done": len(ids),
                "stored": {
                    "params": len(sample.params),
                    "metrics": len(sample.metrics),
                    "status": sample.status,
                },
            }
        )
    )
    ws.close()


if __name__ == "__main__":
    main()
