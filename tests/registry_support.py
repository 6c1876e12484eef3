"""Helpers shared by the registry test modules: a tiny model logged under a run."""

from __future__ import annotations

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
