"""modelyard's team server with N uvicorn workers, for bench/tracking_server.py only.

    python bench/_ts_modelyard_server.py WORKSPACE PORT WORKERS

What ``modelyard server --workers N`` runs (``run_server``: the same app, uvicorn's worker
processes, log level warning, no access log), started here because at commit ``9173c97``
the command's workers stop at start-up: ``app_from_environment`` passes the workspace in
``MODELYARD_SERVER_WORKSPACE``, which the configuration rejects as an unknown
``MODELYARD_*`` variable. The benchmark uses this file only when the command fails that
way, and says so in its report. The workspace travels in ``BENCH_TS_WORKSPACE`` instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

_ENV_ROOT = "BENCH_TS_WORKSPACE"


def app() -> Any:
    """uvicorn's factory: one app per worker process, as ``app_from_environment`` builds."""
    from modelyard.server import create_server_app
    from modelyard.workspace import Workspace

    return create_server_app(Workspace(os.environ[_ENV_ROOT]), auth=False)


def main() -> None:
    import uvicorn

    from modelyard.workspace import Workspace

    root, port, workers = Path(sys.argv[1]).resolve(), int(sys.argv[2]), int(sys.argv[3])
    Workspace(root).metadata.open()  # migrate once, before the workers start
    os.environ[_ENV_ROOT] = str(root)
    uvicorn.run(
        "_ts_modelyard_server:app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        app_dir=str(Path(__file__).resolve().parent),
    )


if __name__ == "__main__":
    main()
