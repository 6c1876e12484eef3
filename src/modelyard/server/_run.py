"""Start the team server under uvicorn: one process, or several workers that each build
the app from the environment (``app_from_environment``), as uvicorn's workers need."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from modelyard._redact import redact

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modelyard.workspace import Workspace

# Outside the MODELYARD_ prefix, which config reads as settings (and refuses unknown ones).
_ENV_ROOT = "_MODELYARD_TEAM_SERVER_ROOT"
_ENV_AUTH = "_MODELYARD_TEAM_SERVER_AUTH"
logger = logging.getLogger("modelyard.server")


def app_from_environment() -> FastAPI:
    from modelyard.server._app import create_server_app
    from modelyard.workspace import Workspace

    ws = Workspace(os.environ[_ENV_ROOT])
    return create_server_app(ws, auth=os.environ.get(_ENV_AUTH) == "1")


def run_server(
    ws: Workspace,
    *,
    host: str,
    port: int,
    workers: int = 1,
    auth: bool,
    log_level: str = "warning",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    import uvicorn

    from modelyard.server._app import create_server_app

    ws.metadata.open()  # a wrong URL or a server that is down: one line, before binding
    logger.info("team server for %s on %s:%d", redact(ws.config["metadata.url"]), host, port)
    tls: dict[str, Any] = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    if workers > 1:
        os.environ[_ENV_ROOT] = str(ws.config.root.resolve())
        os.environ[_ENV_AUTH] = "1" if auth else "0"
        uvicorn.run(
            "modelyard.server:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
            **tls,
        )
        return
    uvicorn.run(
        create_server_app(ws, auth=auth),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        **tls,
    )
