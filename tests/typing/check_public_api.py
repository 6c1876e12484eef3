"""Static checks of the public API's types: run by mypy (see .ci/run), not by pytest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, assert_type

import pandas as pd
from fastapi import FastAPI

import modelyard
from modelyard.config import Config, load_config
from modelyard.contracts import Schema
from modelyard.monitoring import Alerting, Checker, RuleResult, metric_history, slo_values
from modelyard.registry import LoadedModel, LoggedModel, ModelVersion, RegisteredModel
from modelyard.serving import ScoreResult, ServeOptions, create_app, score
from modelyard.tracking import MetricPoint, Run, RunInfo


def check(ws: modelyard.Workspace, frame: pd.DataFrame) -> None:
    assert_type(load_config("."), Config)
    assert_type(modelyard.seed_everything(1), int)
    assert_type(modelyard.fingerprint(frame), str)
    assert_type(Schema.infer(frame), Schema)
    run = ws.start_run("x", params={"a": 1})
    assert_type(run, Run)
    with run:
        assert_type(run.log_dataset("train", frame), str)
        logged = ws.registry.log_model(run, object(), input_example=frame)
        assert_type(logged, LoggedModel)
    version = ws.registry.register("m", logged)
    assert_type(version, ModelVersion)
    assert_type(version.created_at, datetime)
    assert_type(ws.registry.get("m@production"), ModelVersion)
    assert_type(ws.registry.list(), list[RegisteredModel])
    loaded = ws.registry.load("m/1")
    assert_type(loaded, LoadedModel)
    assert_type(loaded.predict(frame), pd.DataFrame)
    assert_type(ws.runs.get(run.run_id), RunInfo)
    assert_type(ws.runs.search("metrics.a > 1"), list[RunInfo])
    assert_type(ws.runs.history(run.run_id, "loss"), list[MetricPoint])
    bound = ws.registry.register("m", logged, features=modelyard.FeatureBinding("svc"))
    assert_type(bound.features, modelyard.FeatureBinding | None)
    assert_type(ws.registry.rollback("m", "production"), ModelVersion)
    options = ServeOptions(ref="m@production", max_batch_size=8, cache="local")
    assert_type(create_app(ws.registry, [options, "n@staging"]), FastAPI)
    assert_type(score(ws.registry, "m@production", "in.parquet", "out.parquet"), ScoreResult)
    scored = score(ws.registry, "m@production", "in.parquet", "o.parquet", log_predictions=False)
    assert_type(scored.request_id, str | None)
    assert_type(ws.alerting, Alerting)
    checker = Checker(ws.metadata, ws.registry, ws.state_dir / "predictions", ws.features)
    assert_type(checker.run(ws.alerting), list[RuleResult])
    assert_type(
        slo_values(ws.state_dir, "m", datetime.now(), datetime.now()), dict[str, float | None]
    )
    assert_type(metric_history(ws.metadata, "m", metric="drift.*"), list[dict[str, Any]])
