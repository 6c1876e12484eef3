"""What bench/serving_servers.py and its checks (bench/_servers_checks.py) both use: the
app paths, the model's feature names, the environment names, and how a server is started."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPT = BENCH / "serving_servers.py"  # the apps: uvicorn runs it, granian imports it
MODEL = "lr20"
PATHS = {"modelyard": f"/v1/models/{MODEL}/predict", "bare": "/predict"}
WS_ENV, PICKLE_ENV, EVENTS_ENV = "BENCH_SERVERS_WS", "BENCH_SERVERS_PICKLE", "BENCH_SERVERS_EVENTS"
NAMES = [f"f{i}" for i in range(20)]

SERVERS: dict[str, list[str]] = {
    "uvicorn": [],
    "granian": ["--task-impl", "asyncio"],
    "granian-rust-task": ["--task-impl", "rust"],
}


def command(server: str, app: str, port: int, tmp: Path, *extra: str) -> list[str]:
    if server == "uvicorn":
        return [sys.executable, str(SCRIPT), "_uvicorn", app, str(port), *extra]
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--http",
        "1",
        "--no-ws",
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--runtime-threads",
        "1",
        "--runtime-mode",
        "st",
        "--backpressure",
        "128",  # above c=32: never what limits the timed runs
        "--workers-kill-timeout",
        "30",  # modelyard serve's graceful drain
        "--log-level",
        "info",
        "--log-config",
        str(tmp / "granian-log.json"),
        "--port",
        str(port),
        *SERVERS[server],
        *extra,
        "--factory",
        f"serving_servers:{app}_app",
    ]


def server_env(tmp: Path, site: Path, **more: str) -> dict[str, str]:
    """Everything but granian from modelyard's venv: granian's venv only adds granian."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH.parent / "src"), str(BENCH), str(site)])
    env[WS_ENV] = str(tmp / "ws")
    env[PICKLE_ENV] = str(tmp / "lr20.pkl")
    return env | more
