"""Helpers shared by the monitoring tests: traffic through a server that logs predictions."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

import modelyard
from modelyard.serving import create_app


def exchange(
    ws: modelyard.Workspace, name: str, calls: list[tuple[str, Any]]
) -> list[httpx.Response]:
    """POST each (path, body) to an in-process server of ``name@production`` that logs
    its predictions in the workspace; return the responses."""
    app = create_app(
        ws.registry,
        [f"{name}@production"],
        prediction_log=ws.predictions,
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


def train_diabetes(ws: modelyard.Workspace) -> pd.DataFrame:
    """Ridge on the diabetes data as diabetes@production, with its training rows as the
    reference profile; returns those rows."""
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(
            run, Ridge().fit(x, y), input_example=x.head(20), reference_data=x
        )
    version = ws.registry.register("diabetes", logged)
    ws.registry.set_alias("diabetes", "production", version.version)
    return x


def lower_minimums(
    ws: modelyard.Workspace, *, rows: int | None = None, labels: int | None = None
) -> None:
    """Set ``monitoring.min_rows`` / ``min_labels`` in the workspace's modelyard.toml, for
    tests whose few rows or labels are on purpose (the defaults are 200 and 100)."""
    path = ws.root / "modelyard.toml"
    text = path.read_text()
    for name, value in (("min_rows", rows), ("min_labels", labels)):
        if value is not None:
            line = next(x for x in text.splitlines() if x.startswith(f"# {name} = "))
            text = text.replace(line, f"{name} = {value}")
    path.write_text(text)
