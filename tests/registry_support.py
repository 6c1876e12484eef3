"""Helpers shared by the registry test modules: a tiny model logged under a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select

import modelyard
from modelyard.registry import LoggedModel


def log_model(ws: modelyard.Workspace, model: object, example: Any, **run: Any) -> LoggedModel:
    with ws.start_run("train", **run) as active:
        return ws.registry.log_model(active, model, input_example=example)


def double(frame: pd.DataFrame) -> dict[str, Any]:
    return {"y": frame["a"] * 2}


EXAMPLE = pd.DataFrame({"a": [1.0, 2.0, 3.0]})


def count_rows(ws: modelyard.Workspace, table: Any) -> int:
    with ws.metadata.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def doubler() -> Any:
    """``a * 2``, made in a function so that cloudpickle stores it by value: a server
    process, which cannot import the tests, loads it all the same."""

    def double(frame: pd.DataFrame) -> Any:
        return frame["a"] * 2

    return double


def serving_workspace(root: Path, names: Sequence[str], versions: int = 1) -> Path:
    """A workspace at ``root`` where each of ``names`` has ``versions`` versions of
    ``doubler`` and ``NAME@production`` points at the last."""
    with modelyard.Workspace.init(root, environ={}) as ws:
        with ws.start_run("train") as run:
            logged = ws.registry.log_model(run, doubler(), input_example=pd.DataFrame({"a": [1.0]}))
        for name in names:
            for _ in range(versions):
                v = ws.registry.register(name, logged)
            ws.registry.set_alias(name, "production", v.version)
    return root
