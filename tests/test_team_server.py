"""`modelyard server`: the MLflow client, unchanged, against modelyard's tables.

The real `mlflow` client package (mlflow-skinny, in the test extra) drives a real server
process; what it logs is then read back through modelyard's own Python API and CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

import modelyard
from cli_support import run_cli
from team_support import mlflow_env, team_server

SCRIPTS = Path(__file__).with_name("mlflow_scripts")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """One workspace and server for the module, with the training script already run."""
    root = tmp_path_factory.mktemp("team")
    modelyard.Workspace.init(root).close()
    with team_server(root) as url:
        done = subprocess.run(
            [sys.executable, str(SCRIPTS / "train_and_register.py")],
            env=mlflow_env(url),
            capture_output=True,
            text=True,
            timeout=240,
            cwd=root,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        yield root, url, seen


def test_an_unchanged_mlflow_script_sees_what_it_logged(shared: Any) -> None:
    _root, _url, seen = shared
    assert seen["found"] == [seen["manual"]]
    assert seen["history"] == [[s, 1.0 / (s + 1)] for s in range(5)]
    assert seen["notes"] == "trained on the first 200 rows"
    assert seen["artifacts"] == ["config", "notes.txt"]
    assert seen["by_alias"] == seen["version"] == "1"
    assert len(seen["predictions"]) == 5 and set(seen["predictions"]) <= {0, 1}
    assert "training_accuracy_score" in seen["auto_metrics"]


def test_what_mlflow_logged_is_an_ordinary_modelyard_run_and_version(shared: Any) -> None:
    root, _url, seen = shared
    with modelyard.Workspace(root) as ws:
        run = ws.runs.get(seen["manual"])
        assert run.experiment == "breast-cancer" and run.name == "manual"
        assert run.status == "finished"
        assert run.params == {"lr": "0.1", "depth": "3", "kind": "logistic"}
        assert run.metrics["loss"] == pytest.approx(0.2) and run.metrics["auc"] == 0.91
        assert run.tags["team"] == "risk"
        assert {a["path"] for a in run.artifacts} == {"notes.txt", "config/params.json"}
        assert [p.value for p in ws.runs.history(seen["manual"], "loss")][-1] == pytest.approx(0.2)
        version = ws.registry.get("cancer@champion")
        assert version.version == 1 and version.flavor == "mlflow"
        assert version.run_id == seen["auto"]
        assert version.metrics["training_accuracy_score"] > 0.5  # the run's metrics, copied
        assert version.tags["reviewed"] == "yes"
        # the files are one folder in the artifact store, as any version's are
        manifest = json.loads(ws.artifacts.get(version.artifact))
        assert {"MLmodel", "model.pkl"} <= set(manifest["files"])
        names = [f.name for f in version.signature.inputs.fields]
        assert names[:2] == ["mean radius", "mean texture"]  # MLmodel's column signature
        found = ws.runs.search("params.kind = 'logistic'", experiment="breast-cancer")
        assert [r.run_id for r in found] == [seen["manual"]]
        # modelyard loads and runs the MLflow model (its sklearn estimator, no MLflow needed)
        rows = load_breast_cancer(as_frame=True).data.head(5)
        answer = ws.registry.load("cancer@champion").predict(rows)
        assert [int(p) for p in answer["prediction"]] == seen["predictions"]
        assert {"probability_0", "probability_1"} <= set(answer.columns)


def test_the_dashboard_shows_mlflow_runs_and_versions(shared: Any) -> None:
    from ui_support import get

    root, _url, seen = shared
    with modelyard.Workspace(root) as ws:
        model, run = get(ws, "/ui/models/cancer", f"/ui/runs/{seen['manual']}")
    assert model.status_code == 200 and "champion" in model.text and "mlflow" in model.text
    assert run.status_code == 200 and "logistic" in run.text and "loss" in run.text


def test_the_cli_lists_mlflow_runs_and_models(
    shared: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _url, seen = shared
    code, out, _err = run_cli(capsys, "models", "show", "cancer", "-w", str(root))
    assert code == 0 and "champion" in out and "mlflow" in out
    code, out, _err = run_cli(capsys, "runs", "show", seen["manual"], "-w", str(root))
    assert code == 0 and "notes.txt" in out and "logistic" in out


def test_modelyard_runs_are_visible_to_the_mlflow_client(shared: Any) -> None:
    root, url, _seen = shared
    from mlflow import MlflowClient

    with modelyard.Workspace(root) as ws:
        with ws.start_run(name="native", experiment="native-exp", params={"alpha": 0.5}) as run:
            run.log_metric("rmse", 1.5, step=0)
            run.log_metric("rmse", 1.2, step=1)
            run.log_text("hello", "readme.txt")
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("native-exp")
    assert experiment is not None
    got = client.get_run(run.run_id)
    assert got.info.experiment_id == experiment.experiment_id
    assert got.info.status == "FINISHED" and got.data.params == {"alpha": "0.5"}
    assert [m.value for m in client.get_metric_history(run.run_id, "rmse")] == [1.5, 1.2]
    assert [f.path for f in client.list_artifacts(run.run_id)] == ["readme.txt"]


def test_search_speaks_mlflows_filter_language(shared: Any) -> None:
    _root, url, _seen = shared
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=url)
    exp = client.create_experiment("search-lang")
    ids = []
    for i in range(7):
        run = client.create_run(
            exp, run_name=f"r{i}", tags={"group": "even" if i % 2 == 0 else "odd"}
        )
        client.log_batch(
            run.info.run_id,
            metrics=[mlflow_metric("score", i / 10)],
            params=[mlflow_param("model", "tree" if i < 4 else "linear")],
        )
        ids.append(run.info.run_id)
    client.delete_run(ids[6])

    def names(filter_string: str, **kw: Any) -> list[str]:
        return [r.info.run_name for r in client.search_runs([exp], filter_string, **kw)]

    assert names("metrics.score >= 0.3", order_by=["metrics.score DESC"]) == ["r5", "r4", "r3"]
    assert names(
        "tags.group = 'even' and params.model IN ('tree')", order_by=["attributes.run_name ASC"]
    ) == ["r0", "r2"]
    assert names("attributes.run_name ILIKE 'R1%'") == ["r1"]
    assert names("params.model != 'tree' and metrics.score < 0.6") == ["r5", "r4"]
    assert names("tags.missing IS NULL and metrics.score > 0.45") == ["r5"]
    assert names("", run_view_type=2) == ["r6"]  # DELETED_ONLY
    client.restore_run(ids[6])
    assert "r6" in names("")
    first = client.search_runs([exp], "", max_results=3, order_by=["metrics.score ASC"])
    second = client.search_runs(
        [exp], "", max_results=3, order_by=["metrics.score ASC"], page_token=first.token
    )
    assert [r.info.run_name for r in [*first, *second]] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    with pytest.raises(MlflowException, match="OR is not supported|cannot parse"):
        client.search_runs([exp], "metrics.score > 1 or metrics.score < 0")


def mlflow_metric(key: str, value: float, step: int = 0) -> Any:
    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), step)


def mlflow_param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(key, value)


def test_errors_have_mlflows_shape_and_unknown_endpoints_are_404(shared: Any) -> None:
    _root, url, seen = shared
    api = f"{url}/api/2.0/mlflow"
    answer = httpx.get(f"{api}/runs/get", params={"run_id": "0" * 32})
    assert answer.status_code == 404
    body = answer.json()
    assert body["error_code"] == "RESOURCE_DOES_NOT_EXIST" and body["request_id"]
    answer = httpx.post(
        f"{api}/runs/log-parameter", json={"run_id": seen["manual"], "key": "lr", "value": "0.2"}
    )
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in answer.json()["message"]
    answer = httpx.post(f"{api}/runs/log-batch", content=b"{not json")
    assert answer.status_code == 400 and answer.json()["error_code"] == "BAD_REQUEST"
    for params in (
        {"experiment_id": "9" * 25},
        {"run_id": seen["manual"], "key": "x", "value": 1, "step": 2**70},
    ):
        got = httpx.request(
            "POST" if "step" in params else "GET",
            f"{api}/{'runs/log-metric' if 'step' in params else 'experiments/get'}",
            **({"json": params} if "step" in params else {"params": params}),
        )
        assert got.status_code == 400 and "64 bits" in got.json()["message"], got.text
    for method, path in [
        ("GET", "/nope"),
        ("GET", "/api/2.0/mlflow/traces/abc"),
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage"),
        ("GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"),
    ]:
        answer = httpx.request(method, f"{url}{path}")
        assert answer.status_code == 404, path
        assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    answer = httpx.post(
        f"{api}/runs/log-batch",
        json={
            "run_id": seen["manual"],
            "metrics": [{"key": "x", "value": 1, "timestamp": 1}] * 1001,
        },
    )
    assert answer.status_code == 400 and "at most 1000 metrics" in answer.json()["message"]
    # all or nothing: a bad param in a batch stores none of its metrics
    answer = httpx.post(
        f"{api}/runs/log-batch",
        json={
            "run_id": seen["manual"],
            "params": [{"key": "lr", "value": "9"}],
            "metrics": [{"key": "never", "value": 1, "timestamp": 1}],
        },
    )
    assert answer.status_code == 400
    got = httpx.get(f"{api}/runs/get", params={"run_id": seen["manual"]}).json()
    assert "never" not in {m["key"] for m in got["run"]["data"]["metrics"]}


def test_keys_and_roles_guard_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException, RestException

    root = tmp_path / "ws"
    modelyard.Workspace.init(root).close()
    keys = {}
    for role in ("reader", "trainer", "admin"):
        code, out, err = run_cli(
            capsys, "keys", "create", "--role", role, "--name", role, "-w", str(root)
        )
        assert code == 0, err
        keys[role] = next(w for w in out.split() if w.startswith("myd_"))
    with team_server(root, "--require-auth", "--workers", "2") as url:
        answer = httpx.get(f"{url}/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
        assert answer.status_code == 401 and answer.json()["error_code"] == "UNAUTHENTICATED"
        reader = MlflowClient(tracking_uri=url)
        os.environ["MLFLOW_TRACKING_TOKEN"] = keys["reader"]
        try:
            assert reader.get_experiment("0").name == "Default"
            with pytest.raises(
                (MlflowException, RestException), match="PERMISSION_DENIED|403|role"
            ):
                reader.create_experiment("nope")
            os.environ["MLFLOW_TRACKING_TOKEN"] = keys["trainer"]
            trainer = MlflowClient(tracking_uri=url)
            run = trainer.create_run("0")
            trainer.log_metric(run.info.run_id, "m", 1.0)
            trainer.create_registered_model("guarded")
            with pytest.raises(
                (MlflowException, RestException), match="PERMISSION_DENIED|403|role"
            ):
                trainer.set_registered_model_alias("guarded", "production", "1")
        finally:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    with modelyard.Workspace(root) as ws:
        assert ws.runs.get(run.info.run_id).metrics == {"m": 1.0}


@pytest.mark.postgres
@pytest.mark.s3
def test_two_servers_on_one_database_are_one_service(
    tmp_path: Path, pg_url: str, s3_bucket: str, s3_endpoint: str
) -> None:
    """Stateless behind a load balancer: two instances on one PostgreSQL database and one
    S3 bucket. A run made through one instance is logged through the other and read back
    through the first; a version registered on one is an alias away on the other."""
    from mlflow import MlflowClient

    root = tmp_path / "ws"
    modelyard.Workspace.init(
        root, metadata_url=pg_url, artifacts_url=s3_bucket, artifacts_endpoint_url=s3_endpoint
    ).close()
    with team_server(root) as first, team_server(root) as second:
        a, b = MlflowClient(tracking_uri=first), MlflowClient(tracking_uri=second)
        exp = a.create_experiment("balanced")
        assert b.get_experiment_by_name("balanced").experiment_id == exp
        run = a.create_run(exp, run_name="shared")
        b.log_batch(
            run.info.run_id,
            metrics=[mlflow_metric("loss", v, s) for s, v in enumerate([0.9, 0.5])],
            params=[mlflow_param("lr", "0.1")],
        )
        artifact = tmp_path / "weights.bin"
        artifact.write_bytes(b"\x00\x01" * 1000)
        b.log_artifact(run.info.run_id, str(artifact), "model")
        a.set_terminated(run.info.run_id)
        got = a.get_run(run.info.run_id)
        assert got.data.metrics == {"loss": 0.5} and got.data.params == {"lr": "0.1"}
        assert got.info.status == "FINISHED"
        out = a.download_artifacts(run.info.run_id, "model/weights.bin", str(tmp_path / "dl"))
        assert Path(out).read_bytes() == artifact.read_bytes()
        version = (
            b.create_model_version(
                "shared-model", f"runs:/{run.info.run_id}/model", run.info.run_id
            )
            if b.create_registered_model("shared-model")
            else None
        )
        assert version is not None and version.version == "1"
        assert a.get_model_version("shared-model", "1").run_id == run.info.run_id
        # both answer the same search
        assert (
            [r.info.run_id for r in a.search_runs([exp], "metrics.loss < 0.6")]
            == [r.info.run_id for r in b.search_runs([exp], "metrics.loss < 0.6")]
            == [run.info.run_id]
        )
        # modelyard's own client: log and register through one, load through the other
        (tmp_path / "laptop").mkdir()
        rows = pd.DataFrame({"x": [0.0, 1.0]})
        with modelyard.Workspace(tmp_path / "laptop", metadata_url=second) as via_b:
            with via_b.start_run("own") as own:
                own.log_metric("auc", 0.75)
                model = LogisticRegression().fit(rows, [0, 1])
                logged = via_b.registry.log_model(own, model, input_example=rows)
            registered = via_b.registry.register("own-model", logged)
            via_b.registry.set_alias("own-model", "production", registered.version)
        with modelyard.Workspace(tmp_path / "laptop", metadata_url=first) as via_a:
            loaded = via_a.registry.load("own-model@production")
            assert list(loaded.predict(rows)["prediction"]) == [0, 1]
            assert via_a.runs.get(own.run_id).metrics == {"auc": 0.75}


def test_import_copies_an_mlflow_store_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same unchanged script writes a real MLflow store (SQLite and ./mlruns); the
    import copies runs, histories, artifacts, versions and aliases, and a second import
    copies nothing."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_and_register.py")],
        env=mlflow_env(store),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    root = tmp_path / "ws"
    modelyard.Workspace.init(root).close()
    code, out, err = run_cli(capsys, "import", "mlflow", "--from", store, "-w", str(root))
    assert code == 0, err
    assert "imported 2 runs" in out and "1 model versions" in out
    with modelyard.Workspace(root) as ws:
        run = ws.runs.get(seen["manual"])
        assert run.experiment == "breast-cancer" and run.params["kind"] == "logistic"
        assert [(p.step, p.value) for p in ws.runs.history(seen["manual"], "loss")] == [
            (s, pytest.approx(1.0 / (s + 1))) for s in range(5)
        ]
        notes = next(a for a in run.artifacts if a["path"] == "notes.txt")
        assert ws.artifacts.get(notes["digest"]) == b"trained on the first 200 rows"
        version = ws.registry.get("cancer@champion")
        assert version.version == 1 and version.run_id == seen["auto"]
        assert version.tags["reviewed"] == "yes"
        assert "MLmodel" in json.loads(ws.artifacts.get(version.artifact))["files"]
        rows = load_breast_cancer(as_frame=True).data.head(5)
        answer = ws.registry.load("cancer@champion").predict(rows)
        assert [int(p) for p in answer["prediction"]] == seen["predictions"]
    code, out, err = run_cli(capsys, "import", "mlflow", "--from", store, "-w", str(root))
    assert code == 0, err
    assert "imported 0 runs (2 already here)" in out and "(1 already here)" in out
    with modelyard.Workspace(root) as ws:
        assert [v.version for v in ws.registry.versions("cancer")] == [1]


def test_import_from_a_store_that_is_not_there_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # no backoff in the test
    root = tmp_path / "ws"
    modelyard.Workspace.init(root).close()
    code, _out, err = run_cli(
        capsys, "import", "mlflow", "--from", "http://127.0.0.1:9", "-w", str(root)
    )
    assert code == 2 and "cannot read the MLflow store" in err and "Traceback" not in err
    for missing in (str(tmp_path / "mlrunz"), f"sqlite:///{tmp_path / 'nope.db'}"):
        code, _out, err = run_cli(capsys, "import", "mlflow", "--from", missing, "-w", str(root))
        assert code == 2 and "no such" in err, err
    assert not (tmp_path / "mlrunz").exists() and not (tmp_path / "nope.db").exists()


def test_pages_ordered_by_a_metric_end_with_the_runs_that_lack_it(shared: Any) -> None:
    _root, url, _seen = shared
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.create_experiment("paging")
    for name, value in [("a", 0.1), ("b", 0.3), ("c", 0.2), ("d", None), ("e", None)]:
        run = client.create_run(exp, run_name=name, start_time=int(time.time() * 1000))
        if value is not None:
            client.log_metric(run.info.run_id, "m", value)
        time.sleep(0.01)  # distinct start times: the runs without m come newest first
    seen, token = [], None
    while True:
        page = client.search_runs(
            [exp], order_by=["metrics.m DESC"], max_results=2, page_token=token
        )
        seen.append([r.info.run_name for r in page])
        token = page.token
        if not token:
            break
    assert seen == [["b", "c"], ["a", "e"], ["d"]]


def test_registry_searches_and_experiment_lifecycle_as_the_mlflow_client_expects(
    shared: Any,
) -> None:
    _root, url, seen = shared
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    # the client adds tags.`mlflow.prompt.is_prompt` != 'true' to every model search
    assert "cancer" in [m.name for m in client.search_registered_models()]
    assert [m.name for m in client.search_registered_models("name LIKE 'canc%'")] == ["cancer"]
    exp = client.create_experiment("short-lived")
    kept, alone = client.create_run(exp), client.create_run(exp)
    client.delete_run(alone.info.run_id)
    client.delete_experiment(exp)
    assert client.get_run(kept.info.run_id).info.lifecycle_stage == "deleted"
    client.restore_experiment(exp)
    assert client.get_run(kept.info.run_id).info.lifecycle_stage == "active"
    assert client.get_run(alone.info.run_id).info.lifecycle_stage == "deleted"
