"""The dashboard's pages in process: ``get(ws, *paths)`` renders them through httpx's ASGI
transport on ``modelyard ui``'s app (server time only, no browser)."""

from __future__ import annotations

import anyio
import httpx

import modelyard
from modelyard.ui import create_ui_app


def get(ws: modelyard.Workspace, *paths: str) -> list[httpx.Response]:
    app = create_ui_app(ws)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [await c.get(p) for p in paths]

    return anyio.run(go)
