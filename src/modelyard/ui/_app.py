"""The dashboard as an ASGI app: ``modelyard ui`` serves it alone on a workspace, and
``modelyard serve`` mounts it at /ui on the model server (``mount_on_server``)."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRouter
from fastapi.staticfiles import StaticFiles

from modelyard.security import Sessions
from modelyard.ui._actions import action_routes
from modelyard.ui._errors import install_error_pages
from modelyard.ui._monitor_pages import monitor_routes
from modelyard.ui._ops_pages import ops_routes
from modelyard.ui._pages import page_routes
from modelyard.ui._serving_page import Traffic, serving_routes
from modelyard.ui._sign_in import sign_in_routes
from modelyard.ui._traffic import LiveTraffic, LoggedTraffic
from modelyard.ui._viewer import viewer_dependency

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


def create_ui_app(ws: Workspace) -> FastAPI:
    """The dashboard pages of ``ws`` under /ui, read-only, with their assets."""
    app = FastAPI(title="modelyard dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    for router in _pages(ws, LoggedTraffic(ws)):
        app.include_router(router)
    _finish(app)
    return app


def mount_on_server(app: FastAPI, *, ws: Workspace) -> None:
    """Add the dashboard to the model server ``app`` (``serving.create_app``'s ``extend``).

    Pages need a reader or admin key (a signed-in session; ``serving/_auth.py`` checks
    it before any page runs); an admin may also act. Serving numbers are this server's own.
    """
    guard = app.state.guard
    sessions = Sessions(ws.secret_key("signing"))
    guard.sessions = sessions
    see = Depends(viewer_dependency(sessions, guard.ring is not None))
    traffic = LiveTraffic(app.state.pool.metrics.render)
    for router in (*_pages(ws, traffic), action_routes(ws, sessions)):
        app.include_router(router, dependencies=[see])
    app.include_router(sign_in_routes(ws, guard, sessions))
    _finish(app)


def _pages(ws: Workspace, traffic: Traffic) -> list[APIRouter]:
    return [
        page_routes(ws),
        serving_routes(ws, traffic),
        ops_routes(ws),
        monitor_routes(ws),
    ]


def _finish(app: FastAPI) -> None:
    install_error_pages(app)  # /ui errors as pages; the server's API keeps its JSON
    static = resources.files("modelyard.ui") / "static"
    app.mount("/ui/static", StaticFiles(directory=str(static)), name="ui-static")

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui/runs", status_code=307)
