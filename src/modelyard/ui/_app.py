"""The dashboard as an ASGI app: ``modelyard ui`` serves it alone on a workspace."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from modelyard.ui._monitor_pages import monitor_routes
from modelyard.ui._ops_pages import ops_routes
from modelyard.ui._pages import page_routes

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


def create_ui_app(ws: Workspace) -> FastAPI:
    """The dashboard pages of ``ws`` under /ui, read-only, with their assets."""
    app = FastAPI(title="modelyard dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(page_routes(ws))
    app.include_router(ops_routes(ws))
    app.include_router(monitor_routes(ws))
    static = resources.files("modelyard.ui") / "static"
    app.mount("/ui/static", StaticFiles(directory=str(static)), name="ui-static")

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui/runs", status_code=307)

    return app
