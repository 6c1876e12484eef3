"""Batch scoring (``modelyard score``): chunked, validated, atomic, with lineage; local and Ray."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from cli_support import run_cli
from modelyard.errors import ConfigError, InvalidInputError, SchemaValidationError
from modelyard.serving import ScoreResult, score
from modelyard.serving._score import ScorePlan, read_chunks
from modelyard.serving._score_parts import plan_partitions

REF = "cancer@production"


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data, bunch.target.map({0: "malignant", 1: "benign"})


def register_cancer(ws: modelyard.Workspace, data: tuple[pd.DataFrame, pd.Series]) -> None:
    x, y = data
    with ws.start_run("train") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        logged = ws.registry.log_model(run, model, input_example=x.head(10))
    version = ws.registry.register("cancer", logged)
    ws.registry.set_alias("cancer", "production", version.version)


def patients(x: pd.DataFrame) -> pd.DataFrame:
    """The input file's rows: an id column the model does not use, then the features."""
    return pd.concat([pd.DataFrame({"patient_id": np.arange(len(x)) + 1000}), x], axis=1)


def write_input(frame: pd.DataFrame, path: Path, row_group_size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False, row_group_size=row_group_size)
    return path


@pytest.fixture
def ws(
    sqlite_workspace: modelyard.Workspace, data: tuple[pd.DataFrame, pd.Series]
) -> modelyard.Workspace:
    register_cancer(sqlite_workspace, data)
    return sqlite_workspace


@pytest.fixture
def input_file(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> Path:
    return write_input(patients(data[0]), tmp_path / "in" / "patients.parquet")


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture(params=["in process", "worker processes"])
def local(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``"local"`` opened for the call scores a small input in the calling process; an
    open local executor scores it in its worker processes: the output is the same."""
    if request.param == "in process":
        yield "local"
        return
    from modelyard.backends.executors import open_executor

    executor = open_executor("local")
    try:
        yield executor
    finally:
        executor.close()


def test_output_is_the_input_plus_what_loaded_model_predict_returns(
    ws: modelyard.Workspace,
    input_file: Path,
    out_dir: Path,
    data: tuple[pd.DataFrame, Any],
    local: Any,
) -> None:
    x = data[0]
    seen: list[tuple[int, int]] = []

    result = score(
        ws.registry,
        REF,
        input_file,
        out_dir / "scored.parquet",
        chunk_size=100,
        executor=local,
        progress=lambda done, total: seen.append((done, total)),
        prediction_log=ws.predictions,
    )

    assert isinstance(result, ScoreResult)
    assert (result.model, result.version) == ("cancer", 1)
    assert (result.rows_in, result.rows_out, result.chunks) == (569, 569, 6)
    # Compared with the rows as read from the file: a frame read from Parquet is laid out
    # by column, and BLAS may round the last bit differently for another memory layout.
    model = ws.registry.load(REF)
    expected = model.predict(pd.read_parquet(input_file))
    out = pd.read_parquet(result.output)
    assert list(out.columns) == ["patient_id", *x.columns, *expected.columns]
    pd.testing.assert_frame_equal(out[["patient_id", *x.columns]], patients(x), check_exact=True)
    pd.testing.assert_frame_equal(
        out[list(expected.columns)], expected, check_exact=True, check_dtype=False
    )
    # Progress moves in order as runs of whole chunks finish, in steps, up to every row.
    done = [d for d, _ in seen]
    assert {t for _, t in seen} == {569} and done[0] == 0 and done[-1] == 569
    assert done == sorted(set(done)) and len(done) > 2
    assert all(d % 100 == 0 for d in done[:-1])


def test_lineage_record_ties_the_output_to_model_and_input(
    ws: modelyard.Workspace, input_file: Path, out_dir: Path
) -> None:
    version = ws.registry.get(REF)

    result = score(
        ws.registry,
        REF,
        input_file,
        out_dir / "scored.parquet",
        chunk_size=200,
        prediction_log=ws.predictions,
    )

    assert result.lineage == out_dir / "scored.parquet.lineage.json"
    record = json.loads(result.lineage.read_text())
    digest = "sha256:" + hashlib.sha256(input_file.read_bytes()).hexdigest()
    assert record["input_fingerprint"] == result.input_fingerprint == digest
    assert {k: record[k] for k in ("model", "version", "ref", "artifact", "run_id")} == {
        "model": "cancer",
        "version": 1,
        "ref": REF,
        "artifact": version.artifact,
        "run_id": version.run_id,
    }
    assert record["input_path"] == str(input_file.resolve())
    assert record["output_path"] == str(result.output.resolve())
    assert (record["rows_in"], record["rows_out"], record["chunks"]) == (569, 569, 3)
    assert (record["chunk_size"], record["executor"], record["keep_input"]) == (200, "local", True)
    assert record["modelyard_version"] == modelyard.__version__
    started = datetime.fromisoformat(record["started_at"])
    finished = datetime.fromisoformat(record["finished_at"])
    assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0
    assert started <= finished
    assert sorted(os.listdir(out_dir)) == ["scored.parquet", "scored.parquet.lineage.json"]


def test_no_keep_input_writes_only_the_model_outputs(
    ws: modelyard.Workspace, input_file: Path, out_dir: Path
) -> None:
    result = score(
        ws.registry,
        REF,
        input_file,
        out_dir / "p.parquet",
        keep_input=False,
        prediction_log=ws.predictions,
    )

    names = pq.ParquetFile(result.output).schema_arrow.names
    assert names == ["prediction", "probability_benign", "probability_malignant"]
    assert json.loads(result.lineage.read_text())["keep_input"] is False


@pytest.mark.parametrize(
    ("chunk_size", "chunks"), [(1000, 1), (569, 1), (568, 2), (100, 6), (50, 12)]
)
def test_chunk_count_follows_chunk_size(
    ws: modelyard.Workspace, input_file: Path, out_dir: Path, chunk_size: int, chunks: int
) -> None:
    result = score(
        ws.registry,
        REF,
        input_file,
        out_dir / "s.parquet",
        chunk_size=chunk_size,
        prediction_log=ws.predictions,
    )

    assert (result.chunks, result.rows_out) == (chunks, 569)
    assert pq.ParquetFile(result.output).metadata.num_rows == 569


def test_an_empty_input_gives_an_empty_output_with_every_column(
    ws: modelyard.Workspace, tmp_path: Path, out_dir: Path, data: tuple[pd.DataFrame, Any]
) -> None:
    source = write_input(patients(data[0]).head(0), tmp_path / "in" / "none.parquet")

    result = score(ws.registry, REF, source, out_dir / "s.parquet", prediction_log=ws.predictions)

    out = pq.read_table(result.output)
    assert (out.num_rows, result.chunks) == (0, 0)
    assert out.schema.names[-3:] == ["prediction", "probability_benign", "probability_malignant"]


def test_cli_shows_progress_and_prints_one_summary_line(
    ws: modelyard.Workspace,
    input_file: Path,
    out_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = out_dir / "scored.parquet"

    code, out, err = run_cli(
        capsys,
        "score",
        REF,
        "--input",
        str(input_file),
        "--output",
        str(output),
        "--chunk-size",
        "100",
        "-w",
        str(ws.root),
    )

    assert code == 0, err
    assert "569/569 rows" in out  # the progress bar's last state
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("scored 569 rows with cancer/1 in 6 chunk(s), ")
    assert summary.endswith(f": {output}; lineage: {output}.lineage.json")
    assert pq.ParquetFile(output).metadata.num_rows == 569


def test_the_executor_option_overrides_the_setting(
    ws: modelyard.Workspace,
    input_file: Path,
    out_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_EXECUTOR_URL", "ray://nowhere:10001")
    output = out_dir / "scored.parquet"

    code, _, err = run_cli(
        capsys, "score", REF, "-i", str(input_file), "-o", str(output), "--executor", "local",
        "-w", str(ws.root),
    )  # fmt: skip

    assert code == 0, err
    assert json.loads((out_dir / "scored.parquet.lineage.json").read_text())["executor"] == "local"


def _with_null(x: pd.DataFrame) -> pd.DataFrame:
    frame = patients(x)
    frame.loc[345, "mean area"] = np.nan
    return frame


# Each case: (the input made from the data: a frame, raw bytes or None for no file;
# the output's name; a pattern of the expected message).
BAD_INPUTS: dict[str, tuple[Callable[[pd.DataFrame], Any], str, str]] = {
    "missing-column": (
        lambda x: patients(x).drop(columns="mean radius"),
        "s.parquet",
        "field 'mean radius': required column is missing; fix the input file",
    ),
    "wrong-dtype": (
        lambda x: patients(x).assign(**{"mean texture": "soft"}),
        "s.parquet",
        r"field 'mean texture': dtype \w+ is not float64; cast the column",
    ),
    "null-in-a-later-chunk": (
        _with_null,
        "s.parquet",
        "row 345, field 'mean area': null value in a non-nullable column",
    ),
    "clashing-column": (
        lambda x: patients(x).assign(prediction="?"),
        "s.parquet",
        "has a column 'prediction', which the model's output column",
    ),
    "missing-file": (lambda x: None, "s.parquet", "does not exist; pass an existing Parquet file"),
    "not-parquet": (lambda x: b"id,value\n1,2\n", "s.parquet", "is not a readable Parquet file"),
    "missing-output-folder": (
        patients,
        "nowhere/s.parquet",
        "output folder '.*nowhere' does not exist; create it first",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_leaves_no_file(
    ws: modelyard.Workspace,
    tmp_path: Path,
    out_dir: Path,
    data: tuple[pd.DataFrame, Any],
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    make, name, expected = BAD_INPUTS[case]
    source = tmp_path / "in" / "bad.parquet"
    content = make(data[0])
    if isinstance(content, pd.DataFrame):
        write_input(content, source)
    elif isinstance(content, bytes):
        source.parent.mkdir()
        source.write_bytes(content)

    code, out, err = run_cli(
        capsys,
        "score",
        REF,
        "-i",
        str(source),
        "-o",
        str(out_dir / name),
        "--chunk-size",
        "100",
        "-w",
        str(ws.root),
    )

    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(expected, err), err
    assert os.listdir(out_dir) == []


def test_a_failed_run_leaves_the_previous_output_and_lineage_as_they_were(
    ws: modelyard.Workspace, tmp_path: Path, out_dir: Path, data: tuple[pd.DataFrame, Any]
) -> None:
    output = out_dir / "s.parquet"
    first = score(
        ws.registry,
        REF,
        write_input(patients(data[0]), tmp_path / "a.parquet"),
        output,
        prediction_log=ws.predictions,
    )
    before = output.read_bytes(), first.lineage.read_bytes()

    with pytest.raises(SchemaValidationError, match="row 345, field 'mean area'") as info:
        score(
            ws.registry,
            REF,
            write_input(_with_null(data[0]), tmp_path / "b.parquet"),
            output,
            prediction_log=ws.predictions,
        )

    assert info.value.errors[0]["row"] == 345
    assert (output.read_bytes(), first.lineage.read_bytes()) == before
    assert sorted(os.listdir(out_dir)) == ["s.parquet", "s.parquet.lineage.json"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"executor": "spark"}, "executor 'spark' is not known; use one of: local, ray"),
        ({"chunk_size": 0}, "chunk size 0 is too small"),
    ],
)
def test_bad_options_are_refused_before_anything_is_read(
    ws: modelyard.Workspace, input_file: Path, out_dir: Path, options: Any, expected: str
) -> None:
    with pytest.raises(InvalidInputError, match=expected):
        score(
            ws.registry,
            REF,
            input_file,
            out_dir / "s.parquet",
            **options,
            prediction_log=ws.predictions,
        )
    assert os.listdir(out_dir) == []


def test_ray_executor_without_ray_names_the_extra_to_install(
    ws: modelyard.Workspace, input_file: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes 'import ray' fail

    with pytest.raises(ConfigError, match=r"pip install 'modelyard\[ray\]'"):
        score(
            ws.registry,
            REF,
            input_file,
            out_dir / "s.parquet",
            executor="ray",
            prediction_log=ws.predictions,
        )
    assert os.listdir(out_dir) == []


# Module-level: a buffer that outlived its proxy pool would crash when freed.
ARROW_POOL = pa.proxy_memory_pool(pa.default_memory_pool())


@pytest.mark.slow
def test_memory_follows_the_chunk_size_not_the_file_size(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    names = ["a", "b", "c", "d"]

    def total(frame: pd.DataFrame) -> Any:
        return {"total": frame.sum(axis=1)}

    with ws.start_run("train") as run:
        example = pd.DataFrame({n: [1.0] for n in names})
        ws.registry.register("sum", ws.registry.log_model(run, total, input_example=example))
    rows, group = 2_000_000, 50_000
    schema = pa.schema([(n, pa.float64()) for n in names])
    rng = np.random.default_rng(0)
    source = tmp_path / "big.parquet"
    with pq.ParquetWriter(source, schema) as writer:  # written a row group at a time
        for _ in range(rows // group):
            writer.write_table(pa.table({n: rng.random(group) for n in names}, schema=schema))
    whole_input = rows * len(names) * 8  # bytes the input takes once in memory

    # Python and NumPy allocations are traced by tracemalloc, Arrow's by a proxy pool
    # with its own peak: together they see every buffer that scales with the data.
    arrow = ARROW_POOL
    previous = pa.default_memory_pool()
    pa.set_memory_pool(arrow)
    tracemalloc.start()
    try:
        result = score(
            ws.registry,
            "sum/1",
            source,
            tmp_path / "out.parquet",
            chunk_size=10_000,
            prediction_log=ws.predictions,
        )
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)

    assert (result.rows_out, result.chunks) == (rows, 200)
    peak = python_peak + arrow.max_memory()
    assert peak < whole_input / 4, f"peak {peak / 1e6:.1f} MB for {whole_input / 1e6:.0f} MB"


def test_chunks_of_a_row_range_fall_on_multiples_of_the_chunk_size(tmp_path: Path) -> None:
    source = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": np.arange(569)}), source, row_group_size=50)
    plan = ScorePlan(input=source, read=None, chunk_size=40, keep_input=True)

    with pq.ParquetFile(source) as parquet:
        chunks = list(read_chunks(parquet, plan, 160, 330))

    assert [(first, t.num_rows) for first, t in chunks] == [
        (160, 40),
        (200, 40),
        (240, 40),
        (280, 40),
        (320, 10),
    ]
    assert np.concatenate([t["id"].to_numpy() for _, t in chunks]).tolist() == list(range(160, 330))


@pytest.mark.parametrize(
    ("rows", "wanted", "expected"),
    [
        (569, 4, [(0, 160), (160, 320), (320, 480), (480, 569)]),
        (569, 100, [(i, min(569, i + 40)) for i in range(0, 569, 40)]),
        (30, 4, [(0, 30)]),
    ],
)
def test_ray_partitions_are_runs_of_whole_chunks(
    rows: int, wanted: int, expected: list[tuple[int, int]]
) -> None:
    parts = plan_partitions(rows, 40, wanted)

    assert [(p.start, p.stop) for p in parts] == expected


# -- Ray ------------------------------------------------------------------------------------
# The session's local Ray instance (conftest.py's ray_executor): it costs seconds to start.


@pytest.fixture(scope="module")
def ray_env(
    tmp_path_factory: pytest.TempPathFactory,
    data: tuple[pd.DataFrame, pd.Series],
    ray_executor: Any,
) -> Iterator[SimpleNamespace]:
    import ray

    folder = tmp_path_factory.mktemp("ray")
    ws = modelyard.Workspace.init(folder / "ws")
    register_cancer(ws, data)
    # 12 row groups of 50 rows: with 2 CPUs and chunks of 40 rows, 4 partitions of 150.
    source = write_input(patients(data[0]), folder / "in.parquet", row_group_size=50)
    first = score(
        ws.registry,
        REF,
        source,
        folder / "first.parquet",
        executor="ray",
        prediction_log=ws.predictions,
    )
    try:
        yield SimpleNamespace(ws=ws, source=source, first=first, running=ray.is_initialized())
    finally:
        ws.close()


@pytest.mark.slow
def test_ray_uses_the_running_instance_and_leaves_it_running(ray_env: Any) -> None:
    # (An instance that score() starts itself it also stops: test_executors.py, conftest.py.)
    assert ray_env.running
    assert ray_env.first.rows_out == 569
    assert json.loads(ray_env.first.lineage.read_text())["executor"] == "ray"


@pytest.mark.slow
def test_ray_output_is_identical_to_the_local_output(ray_env: Any, out_dir: Path) -> None:
    local = score(
        ray_env.ws.registry,
        REF,
        ray_env.source,
        out_dir / "local.parquet",
        chunk_size=40,
        prediction_log=ray_env.ws.predictions,
    )

    on_ray = score(
        ray_env.ws.registry,
        REF,
        ray_env.source,
        out_dir / "ray.parquet",
        chunk_size=40,
        executor="ray",
        prediction_log=ray_env.ws.predictions,
    )

    assert (on_ray.rows_out, on_ray.chunks) == (local.rows_out, local.chunks) == (569, 15)
    assert pq.read_table(on_ray.output).equals(pq.read_table(local.output))
    assert pq.read_table(ray_env.first.output).equals(pq.read_table(local.output))
    assert sorted(os.listdir(out_dir)) == [
        "local.parquet",
        "local.parquet.lineage.json",
        "ray.parquet",
        "ray.parquet.lineage.json",
    ]


@pytest.mark.slow
def test_ray_names_the_bad_row_by_its_place_in_the_file_and_leaves_no_part(
    ray_env: Any, tmp_path: Path, out_dir: Path, data: tuple[pd.DataFrame, Any]
) -> None:
    source = write_input(_with_null(data[0]), tmp_path / "bad.parquet", row_group_size=50)

    with pytest.raises(SchemaValidationError) as info:
        score(
            ray_env.ws.registry,
            REF,
            source,
            out_dir / "s.parquet",
            chunk_size=40,
            executor="ray",
            prediction_log=ray_env.ws.predictions,
        )

    assert "input" in info.value.message and "row 345, field 'mean area'" in info.value.message
    assert info.value.errors[0]["row"] == 345
    assert os.listdir(out_dir) == []


@pytest.mark.slow
@pytest.mark.parametrize("chosen_by", ["option", "setting"])
def test_cli_scores_on_ray(
    ray_env: Any,
    out_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    chosen_by: str,
) -> None:
    output = out_dir / "s.parquet"
    if chosen_by == "setting":
        monkeypatch.setenv("MODELYARD_EXECUTOR_URL", "ray")
    option = ["--executor", "ray"] if chosen_by == "option" else []

    code, out, err = run_cli(
        capsys,
        "score",
        REF,
        "-i",
        str(ray_env.source),
        "-o",
        str(output),
        *option,
        "-w",
        str(ray_env.ws.root),
    )

    assert code == 0, err
    assert "scored 569 rows with cancer/1" in out
    assert json.loads((out_dir / "s.parquet.lineage.json").read_text())["executor"] == "ray"
