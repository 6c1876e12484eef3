"""Static checks of the public API's types: run by mypy (see .ci/run), not by pytest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, assert_type

import pandas as pd
from fastapi import FastAPI

import modelyard
from modelyard.backends.executors import Settled
from modelyard.config import Config, load_config
from modelyard.contracts import Schema
from modelyard.jobs import (
    JobContext,
    JobHistory,
    JobRun,
    JobSpec,
    Progress,
    backfill,
    job,
    run_job,
)
from modelyard.monitoring import (
    Alerting,
    Checker,
    Lineage,
    RuleResult,
    lineage_of,
    metric_history,
    slo_values,
)
from modelyard.registry import (
    LoadedModel,
    LoggedModel,
    ModelVersion,
    RegisteredModel,
    TrafficSplit,
    get_traffic,
)
from modelyard.release import BuildContext, ReleaseRecord, release_history, write_context
from modelyard.serving import ScoreResult, ServeOptions, create_app, score
from modelyard.tracking import MetricPoint, Run, RunInfo


def _half(x: int) -> float:
    return x / 2


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
    with ws.start_run("features") as trained:
        assert_type(ws.features.get_historical(frame, "svc", run=trained), Any)
        assert_type(trained.log_feature_lineage(ws.features.lineage("svc")), None)
    assert_type(ws.features.lineage("svc", 1, fingerprint=False), dict[str, Any])
    assert_type(lineage_of(ws, "request-id"), Lineage)
    assert_type(lineage_of(ws, "m@production").to_json_dict(), dict[str, Any])
    options = ServeOptions(ref="m@production", max_batch_size=8, cache="local")
    assert_type(create_app(ws.registry, [options, "n@staging"]), FastAPI)
    assert_type(score(ws.registry, "m@production", "in.parquet", "out.parquet"), ScoreResult)
    scored = score(ws.registry, "m@production", "in.parquet", "o.parquet", log_predictions=False)
    assert_type(scored.request_id, str | None)
    assert_type(ws.alerting, Alerting)
    results = ws.executor.map(_half, [1, 2], names=["a", "b"])
    assert_type(next(results), Settled[float])
    assert_type(next(results).get(), float)
    assert_type(score(ws.registry, "m/1", "i", "o", executor=ws.executor), ScoreResult)
    checker = Checker(ws.metadata, ws.registry, ws.predictions, ws.features)
    assert_type(checker.run(ws.alerting), list[RuleResult])
    assert_type(
        slo_values(ws.predictions, "m", datetime.now(), datetime.now()), dict[str, float | None]
    )
    assert_type(metric_history(ws.metadata, "m", metric="drift.*"), list[dict[str, Any]])
    assert_type(run_job(ws, "nightly", date="2026-11-24"), JobRun)
    assert_type(backfill(ws, "nightly", start="2026-11-01", end="2026-11-07"), list[JobRun])
    assert_type(JobHistory(ws.metadata).runs("nightly", limit=5), list[JobRun])

    @job(schedule="0 2 * * *", timeout="1h")
    def nightly(ctx: JobContext) -> None:
        assert_type(ctx.logical_date, datetime)
        assert_type(ctx.partition, str | None)
        with ctx.progress(10, unit="batch", desc="epoch 1/2") as bar:
            assert_type(bar, Progress)
            assert_type(bar.advance(2, note="loss 0.3"), None)
        steps: Progress = ctx.progress(unit="batch")  # users annotate with the public name
        steps.close()

    keep: Callable[[JobContext], None] = nightly  # @job keeps the function's own type
    assert_type(keep(JobContext("n", "r", datetime.now(), datetime.now(), 1, ".")), None)

    assert_type(JobSpec(name="n", function="m:f").retry_delay(2), float)
    assert_type(release_history(ws.metadata, "m"), list[ReleaseRecord])
    assert_type(get_traffic(ws.registry, "m"), TrafficSplit | None)
    assert_type(write_context(ws, "m@production", "build/m"), BuildContext)
