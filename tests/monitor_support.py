"""Helpers shared by the monitoring tests: traffic through a server that logs predictions."""

from __future__ import annotations

from typing import Any

import anyio
import httpx

import modelyard
from modelyard.monitoring import PredictionLog
from modelyard.serving import create_app


def exchange(
    ws: modelyard.Workspace, name: str, calls: list[tuple[str, Any]]
) -> list[httpx.Response]:
    """POST each (path, body) to an in-process server of ``name@production`` that logs
    its predictions in the workspace; return the responses."""
    app = create_app(
        ws.registry,
        [f"{name}@production"],
        prediction_log=PredictionLog(ws.state_dir / "predictions"),
    )

    async def go() -> list[httpx.Response]:
        out = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for path, body in calls:
                    out.append(await c.post(path, json=body))
        return out

    return anyio.run(go)
