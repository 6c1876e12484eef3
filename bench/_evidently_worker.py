"""Evidently side of bench/monitoring.py; runs under bench/.venv-evidently/bin/python.

Reads one JSON object of settings from argv[1]: the reference and current Parquet files,
the repeat count and a time budget in seconds. Reads both files with pandas (untimed,
as on modelyard's side), then times ``Report([DataDriftPreset()]).run(...)`` up to
``repeats`` times, stopping early when another run would pass the budget, and prints
one JSON object. It imports nothing from modelyard, so Evidently never enters the
package's venv.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import evidently  # noqa: E402
import pandas as pd  # noqa: E402

try:  # evidently >= 0.7
    from evidently import Report  # noqa: E402
    from evidently.presets import DataDriftPreset  # noqa: E402

    LEGACY = False
except ImportError:  # older releases
    from evidently.metric_preset import DataDriftPreset  # type: ignore[no-redef]  # noqa: E402
    from evidently.report import Report  # type: ignore[no-redef]  # noqa: E402

    LEGACY = True


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_once(ref: pd.DataFrame, cur: pd.DataFrame) -> Any:
    if LEGACY:
        report = Report(metrics=[DataDriftPreset()])
        report.run(reference_data=ref, current_data=cur)
        return report
    return Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)


def verdicts(result: Any) -> dict[str, Any]:
    """Per column: method, threshold, score and drifted; plus Evidently's own count."""
    columns: dict[str, dict[str, Any]] = {}
    count = None
    if LEGACY:
        for m in result.as_dict()["metrics"]:
            if m["metric"] == "DataDriftTable":
                for name, c in m["result"]["drift_by_columns"].items():
                    columns[name] = {
                        "method": c["stattest_name"],
                        "threshold": c["stattest_threshold"],
                        "score": c["drift_score"],
                        "drifted": bool(c["drift_detected"]),
                    }
        return {"columns": columns, "evidently_drifted_count": count}
    for m in result.dict()["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("DriftedColumnsCount"):
            count = int(m["value"]["count"])
        elif cfg["type"].endswith("ValueDrift"):
            method, threshold, score = cfg["method"], cfg["threshold"], float(m["value"])
            # Statistical tests drift below their p-value threshold, distances at or above.
            drifted = score < threshold if "p_value" in method else score >= threshold
            columns[cfg["column"]] = {
                "method": method,
                "threshold": threshold,
                "score": score,
                "drifted": drifted,
            }
    return {"columns": columns, "evidently_drifted_count": count}


def main() -> int:
    cfg = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    ref = pd.read_parquet(cfg["reference_path"])
    cur = pd.read_parquet(cfg["current_path"])
    read_s = time.perf_counter() - t0
    rss_before = status_kb("VmRSS")
    times: list[float] = []
    cpu: list[float] = []
    result = None
    for _ in range(cfg["repeats"]):
        if times and sum(times) + times[-1] > cfg["budget_s"]:
            break
        del result
        t, c = time.perf_counter(), time.process_time()
        result = run_once(ref, cur)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        print(f"evidently run {len(times)}: {times[-1]:.2f}s", file=sys.stderr, flush=True)
    out = {
        "evidently_version": evidently.__version__,
        "pandas_version": pd.__version__,
        "read_s": read_s,
        "dtypes": sorted({str(t) for t in ref.dtypes}),
        "times_s": times,
        "cpu_s": cpu,
        "rss_before_kb": rss_before,
        "vmhwm_kb": status_kb("VmHWM"),
        **verdicts(result),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
