"""Batch scoring logs every scored row in the prediction log, as serving does."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_diabetes

import modelyard
from cli_support import run_cli
from modelyard.backends.predictions import log_batch, open_prediction_log
from modelyard.contracts import Field, Schema
from modelyard.errors import ConfigError, SchemaValidationError
from modelyard.registry import Signature
from modelyard.serving import create_app, score
from monitor_support import train_diabetes

REF = "diabetes@production"
LOGGED_AS = re.compile(r", logged as request (score-[0-9a-f]{32}): ")


def write_input(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False, row_group_size=100)
    return path


def patients(x: pd.DataFrame) -> pd.DataFrame:
    """The input rows: an id column the model does not use, then the features."""
    return pd.concat([pd.DataFrame({"patient_id": np.arange(len(x)) + 1000}), x], axis=1)


@pytest.fixture
def ws(sqlite_workspace: modelyard.Workspace) -> modelyard.Workspace:
    train_diabetes(sqlite_workspace)
    return sqlite_workspace


@pytest.fixture
def x(ws: modelyard.Workspace) -> pd.DataFrame:
    return load_diabetes(as_frame=True).data


@pytest.fixture
def input_file(tmp_path: Path, x: pd.DataFrame) -> Path:
    return write_input(patients(x), tmp_path / "in" / "patients.parquet")


def cli_score(
    capsys: pytest.CaptureFixture[str], ws: modelyard.Workspace, ref: str, *args: str
) -> tuple[int, str, str]:
    return run_cli(capsys, "score", ref, *args, "--chunk-size", "100", "-w", str(ws.root))


def predictions(ws: modelyard.Workspace, model: str = "diabetes") -> pd.DataFrame:
    table = ws.predictions.read(model)
    return table.to_pandas().sort_values("row", ignore_index=True) if table.num_rows else None


def test_every_scored_row_is_logged_with_the_inputs_and_outputs_of_the_output_file(
    ws: modelyard.Workspace,
    input_file: Path,
    tmp_path: Path,
    x: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "scored.parquet"
    started = datetime.now(UTC)

    code, out, err = cli_score(capsys, ws, REF, "-i", str(input_file), "-o", str(output))

    assert code == 0, err
    found = LOGGED_AS.search(out.strip().splitlines()[-1])
    assert found is not None, out
    request_id = found.group(1)
    lineage = json.loads((tmp_path / "scored.parquet.lineage.json").read_text())
    assert lineage["request_id"] == request_id
    assert lineage["predictions"] == str(ws.state_dir / "predictions")
    logged, scored = predictions(ws), pd.read_parquet(output)
    assert len(logged) == len(scored) == 442
    assert list(logged["row"]) == list(range(442))  # numbered over the whole file
    assert set(logged["request_id"]) == {request_id}
    assert set(logged["model"]) == {"diabetes"} and set(logged["version"]) == {1}
    assert set(logged["variant"]) == {"batch"}
    assert logged["ts"].between(started, datetime.now(UTC)).all()
    assert (logged["latency_ms"] > 0).all()
    assert (logged.groupby(logged["row"] // 100)["latency_ms"].nunique() == 1).all()  # a chunk's
    inputs = logged[[f"input.{n}" for n in x.columns]].set_axis(list(x.columns), axis=1)
    pd.testing.assert_frame_equal(inputs, scored[list(x.columns)], check_exact=True)
    assert "input.patient_id" not in logged  # not a model input: join it by row
    assert list(logged["output.prediction"]) == list(scored["prediction"])
    parts = sorted((ws.state_dir / "predictions").glob("model=diabetes/date=*/part-*.parquet"))
    assert len(parts) == 5  # one per chunk
    assert not (ws.state_dir / "predictions" / ".staging").exists()


def test_labels_join_batch_rows_by_request_id_and_row(
    ws: modelyard.Workspace,
    input_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = score(
        ws.registry,
        REF,
        input_file,
        tmp_path / "s.parquet",
        chunk_size=100,
        prediction_log=ws.predictions,
    )
    truth = load_diabetes(as_frame=True).target
    labels = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": result.request_id, "row": range(442), "label": truth}).to_parquet(
        labels
    )

    code, out, err = run_cli(
        capsys,
        "monitor",
        "quality",
        "diabetes",
        "--labels",
        str(labels),
        "--json",
        "-w",
        str(ws.root),
    )

    assert code == 0, err
    (group,) = json.loads(out)["groups"]
    assert (group["version"], group["variant"], group["rows"]) == (1, "batch", 442)
    expected = np.abs(pd.read_parquet(result.output)["prediction"] - truth).mean()
    assert group["mae"] == pytest.approx(expected)


def test_drift_reads_batch_scored_traffic(
    ws: modelyard.Workspace,
    input_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        cli_score(capsys, ws, REF, "-i", str(input_file), "-o", str(tmp_path / "s.parquet"))[0] == 0
    )

    code, out, err = run_cli(
        capsys, "monitor", "drift", REF, "--window", "1d", "--json", "-w", str(ws.root)
    )

    assert code == 0, err
    report = json.loads(out)
    assert report["source"] == "traffic of the last 1d"
    assert report["rows_current"] == 442
    assert report["drifted_columns"] == []  # the training rows themselves

    # Batch rows are not service traffic: the serving SLOs leave them out.
    code, out, err = run_cli(capsys, "monitor", "slo", REF, "--json", "-w", str(ws.root))
    slo = json.loads(out)
    assert code == 0, err
    assert slo["requests"] == 0 and slo["volume"] == 0 and slo["latency_p99_ms"] is None


def test_no_log_predictions_logs_nothing(
    ws: modelyard.Workspace,
    input_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "s.parquet"

    code, out, err = cli_score(
        capsys, ws, REF, "-i", str(input_file), "-o", str(output), "--no-log-predictions"
    )

    assert code == 0, err
    assert "logged as" not in out
    assert not (ws.state_dir / "predictions").exists()
    lineage = json.loads((tmp_path / "s.parquet.lineage.json").read_text())
    assert lineage["request_id"] is None and lineage["predictions"] is None


def test_a_failed_scoring_logs_nothing_and_keeps_earlier_jobs(
    ws: modelyard.Workspace,
    input_file: Path,
    tmp_path: Path,
    x: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = score(
        ws.registry,
        REF,
        input_file,
        tmp_path / "first.parquet",
        chunk_size=100,
        prediction_log=ws.predictions,
    )
    bad = patients(x)
    bad.loc[345, "bmi"] = np.nan  # in the fourth chunk: three chunks are scored first
    source = write_input(bad, tmp_path / "in" / "bad.parquet")

    code, _, err = cli_score(capsys, ws, REF, "-i", str(source), "-o", str(tmp_path / "s.parquet"))

    assert code == 2 and "row 345, field 'bmi'" in err
    assert set(predictions(ws)["request_id"]) == {first.request_id}
    assert len(predictions(ws)) == 442
    assert not (ws.state_dir / "predictions" / ".staging").exists()
    assert not (tmp_path / "s.parquet").exists()


def test_the_library_logs_into_the_log_it_is_given(
    ws: modelyard.Workspace, input_file: Path, tmp_path: Path
) -> None:
    result = score(
        ws.registry, REF, input_file, tmp_path / "s.parquet", prediction_log=ws.predictions
    )

    assert result.request_id is not None and result.request_id.startswith("score-")
    assert set(predictions(ws)["request_id"]) == {result.request_id}

    elsewhere = open_prediction_log(str(tmp_path / "log"), spool=tmp_path / "log")
    again = score(ws.registry, REF, input_file, tmp_path / "t.parquet", prediction_log=elsewhere)
    off = score(ws.registry, REF, input_file, tmp_path / "u.parquet", log_predictions=False)

    assert elsewhere.read().column("request_id").unique().to_pylist() == [again.request_id]
    assert off.request_id is None
    assert len(predictions(ws)) == 442


def test_scoring_without_a_log_to_keep_the_rows_in_is_refused(
    ws: modelyard.Workspace, input_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="pass prediction_log=ws.predictions"):
        score(ws.registry, REF, input_file, tmp_path / "s.parquet")
    assert not (tmp_path / "s.parquet").exists()


def test_without_the_input_columns_the_outputs_are_still_logged(
    ws: modelyard.Workspace, input_file: Path, tmp_path: Path, x: pd.DataFrame
) -> None:
    result = score(
        ws.registry,
        REF,
        input_file,
        tmp_path / "s.parquet",
        keep_input=False,
        prediction_log=ws.predictions,
    )

    logged = predictions(ws)
    assert list(logged["output.prediction"]) == list(pd.read_parquet(result.output)["prediction"])
    assert [c for c in logged if c.startswith("input.")] == [f"input.{n}" for n in x.columns]


# -- the same log as serving ------------------------------------------------------------------
PAY = Signature(
    inputs=Schema.of(
        Field(name="email", dtype="string", pii=True),
        Field(name="amount", dtype="float64"),
        Field(name="count", dtype="int64"),
        Field(name="paid_at", dtype="datetime"),
        Field(name="plan", dtype="string", categories=("free", "pro")),
    ),
    outputs=Schema.of(
        Field(name="prediction", dtype="float64"), Field(name="tier", dtype="string")
    ),
)


def pay_model(frame: pd.DataFrame) -> Any:
    return {"prediction": frame["amount"] * frame["count"], "tier": frame["plan"].astype(str)}


@pytest.fixture
def pay(sqlite_workspace: modelyard.Workspace) -> modelyard.Workspace:
    ws = sqlite_workspace
    with ws.start_run("fn") as run:
        logged = ws.registry.log_model(run, pay_model, signature=PAY)
    ws.registry.set_alias("pay", "production", ws.registry.register("pay", logged).version)
    return ws


PAY_ROWS = [
    {
        "email": f"user{i % 3}@example.com",
        "amount": 2.5 * i,
        "count": i,
        "paid_at": datetime(2024, 5, 1, 12, 0, i, 1000 * i, tzinfo=UTC),
        "plan": ("free", "pro")[i % 2],
    }
    for i in range(6)
]


def serve_pay(ws: modelyard.Workspace, rows: list[dict[str, Any]]) -> None:
    app = create_app(ws.registry, ["pay@production"], prediction_log=ws.predictions)
    body = [{**r, "paid_at": r["paid_at"].isoformat()} for r in rows]

    async def go() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.post("/v1/models/pay/predict", json=body)
                assert r.status_code == 200, r.text

    anyio.run(go)


def test_batch_parts_have_the_columns_and_types_of_compacted_served_parts(
    pay: modelyard.Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, folder = pay, pay.state_dir / "predictions"
    serve_pay(ws, PAY_ROWS)  # the server ships its segment to the store when it stops
    served_parts = list(folder.glob("model=pay/date=*/seg-*.parquet"))
    frame = pd.DataFrame(PAY_ROWS).astype({"plan": "category", "count": "int32"})
    source = write_input(frame, tmp_path / "pay.parquet")

    code, _, err = cli_score(
        capsys, ws, "pay@production", "-i", str(source), "-o", str(tmp_path / "o.parquet")
    )

    assert code == 0, err
    batch_parts = [
        p for p in folder.glob("model=pay/date=*/part-*.parquet") if p not in served_parts
    ]
    assert len(served_parts) == len(batch_parts) == 1
    assert pq.read_schema(batch_parts[0]) == pq.read_schema(served_parts[0])
    table = ws.predictions.read("pay").to_pandas()
    served, batch = table[table["variant"] == "production"], table[table["variant"] == "batch"]
    same = [c for c in table.columns if c.startswith(("input.", "output."))]
    pd.testing.assert_frame_equal(
        served.sort_values("row")[same].reset_index(drop=True),
        batch.sort_values("row")[same].reset_index(drop=True),
    )
    # Hashed alike, so a PII value can be matched across served and batch rows; never kept.
    # The keyed hash is whole (HMAC-SHA256 under the workspace's PII key, not a known salt).
    assert batch["input.email"].str.fullmatch(r"h:[0-9a-f]{64}").all()
    assert batch["input.email"].nunique() == 3
    key = ws.secret_key("pii")
    expected = "h:" + hmac.new(key, b"user1@example.com", hashlib.sha256).hexdigest()
    assert expected in set(batch["input.email"])
    assert not any(b"example.com" in p.read_bytes() for p in folder.rglob("*.parquet"))


def test_pii_fields_can_be_dropped(tmp_path: Path) -> None:
    chunk = pa.table({"email": ["a@b.c", None], "amount": [1.0, 2.0]})

    part = log_batch(
        tmp_path,
        model="pay",
        version=3,
        request_id="score-1",
        first_row=10,
        inputs=chunk,
        outputs={"prediction": [2.0, 4.0]},
        latency_ms=1.5,
        pii_fields={"email": True},
        pii="drop",
        ts=datetime(2024, 5, 1, 23, 59, tzinfo=UTC),
    )

    assert part is not None and part.parent == tmp_path / "model=pay" / "date=2024-05-01"
    rows = open_prediction_log(str(tmp_path), spool=tmp_path).read().to_pylist()
    assert [r["row"] for r in rows] == [10, 11]
    assert "input.email" not in rows[0] and rows[0]["input.amount"] == 1.0
    assert rows[1]["output.prediction"] == 4.0 and rows[1]["version"] == 3


def test_a_staged_job_is_invisible_until_published(tmp_path: Path) -> None:
    plog = open_prediction_log(str(tmp_path), spool=tmp_path)
    log = plog.new_batch()
    log.write(
        model="m", version=1, first_row=0, inputs={"a": [1]}, outputs={"y": [2]}, latency_ms=1.0
    )

    assert plog.read().num_rows == 0
    assert plog.lookup([log.request_id]) == {}
    assert log.publish(plog.store) == 1
    assert plog.read().column("request_id").to_pylist() == [log.request_id]
    assert plog.lookup([log.request_id]) == {log.request_id: ("m", 1)}  # feedback finds it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "model=m"]


def test_a_keyed_batch_replaces_the_rows_its_key_logged_before(tmp_path: Path) -> None:
    """A pipeline's rerun of a day, keyed by the day, leaves the day's rows once, even
    after compaction merged them with another job's rows."""
    from modelyard.backends.predictions import compact

    plog = open_prediction_log(str(tmp_path), spool=tmp_path)
    day = datetime(2026, 4, 22, 2, tzinfo=UTC)

    def job(key: str | None, values: list[int]) -> str:
        log = plog.new_batch(ts=day, key=key)
        log.write(
            model="m",
            version=1,
            first_row=0,
            inputs={"a": values},
            outputs={"y": values},
            latency_ms=1.0,
        )
        log.publish(plog.store)
        return log.request_id

    first = job("churn/2026-04-22", [1, 2, 3])
    other = job(None, [7, 8])
    compact(plog.store, min_age_s=0)  # the day's rows and the other job's in one part
    assert len(plog.store.keys("model=m/")) == 1
    again = job("churn/2026-04-22", [4, 5])  # the day, rerun

    assert again == first  # the key's request: labels join the rerun's rows as before
    rows = plog.read().to_pandas()
    assert sorted(rows["input.a"]) == [4, 5, 7, 8]
    assert set(rows["request_id"]) == {first, other}
    job("churn/2026-04-23", [9])  # another key: added, not replacing
    assert sorted(plog.read().to_pandas()["input.a"]) == [4, 5, 7, 8, 9]


# -- Ray ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_ws(
    tmp_path_factory: pytest.TempPathFactory, ray_executor: Any
) -> Iterator[SimpleNamespace]:
    folder = tmp_path_factory.mktemp("ray")
    ws = modelyard.Workspace.init(folder / "ws")
    x = train_diabetes(ws)
    try:
        yield SimpleNamespace(ws=ws, x=x, folder=folder)
    finally:
        ws.close()


@pytest.mark.slow
def test_ray_tasks_log_the_same_rows_as_the_local_executor(ray_ws: Any) -> None:
    ws, folder = ray_ws.ws, ray_ws.folder
    source = write_input(patients(ray_ws.x), folder / "in.parquet")
    bad = patients(ray_ws.x)
    bad.loc[345, "bmi"] = np.nan
    bad_source = write_input(bad, folder / "bad.parquet")
    options: dict[str, Any] = {"chunk_size": 40, "executor": "ray"}

    with pytest.raises(SchemaValidationError, match="row 345"):
        score(
            ws.registry,
            REF,
            bad_source,
            folder / "bad-out.parquet",
            **options,
            prediction_log=ws.predictions,
        )
    assert predictions(ws) is None
    on_ray = score(
        ws.registry, REF, source, folder / "ray.parquet", **options, prediction_log=ws.predictions
    )
    local = score(
        ws.registry,
        REF,
        source,
        folder / "local.parquet",
        chunk_size=40,
        prediction_log=ws.predictions,
    )

    table = predictions(ws)
    columns = [
        "row",
        "version",
        "variant",
        *[c for c in table if c.startswith(("input.", "output."))],
    ]
    by_job = {rid: t[columns].reset_index(drop=True) for rid, t in table.groupby("request_id")}
    assert set(by_job) == {on_ray.request_id, local.request_id}
    pd.testing.assert_frame_equal(by_job[on_ray.request_id], by_job[local.request_id])
    assert len(by_job[on_ray.request_id]) == 442
    assert not (ws.state_dir / "predictions" / ".staging").exists()
