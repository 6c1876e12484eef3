"""A workspace with only a URL and a key: `metadata.url = "http://127.0.0.1:PORT"` (the
team server) tracks, registers, loads and serves through `modelyard server`, with no
database or artifact store of its own."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

import modelyard
from cli_support import run_cli
from modelyard.errors import BackendUnavailableError, ConfigError, ForbiddenError, NotFoundError
from server_support import free_port
from team_support import team_server

ROWS = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0.5, 0.1, 0.9, 0.3, 0.7, 0.2]})
LABELS = [0, 0, 0, 1, 1, 1]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server (keys required) on its own workspace, and an empty client folder."""
    from modelyard.security import create_key

    base = tmp_path_factory.mktemp("team")
    root = base / "server"
    with modelyard.Workspace.init(root) as ws:
        keys = {r: create_key(ws.metadata, r, name=r)[1] for r in ("reader", "trainer", "admin")}
    client = base / "client"
    client.mkdir()
    with team_server(root, "--require-auth") as url:
        yield {"root": root, "url": url, "keys": keys, "client": client}


def remote(team: dict[str, Any], role: str) -> modelyard.Workspace:
    return modelyard.Workspace(
        team["client"], metadata_url=team["url"], server_api_key=team["keys"][role]
    )


def test_a_client_with_a_url_and_a_key_tracks_registers_and_loads(team: dict[str, Any]) -> None:
    with remote(team, "trainer") as ws:
        with ws.start_run("fit", params={"C": 1.0}, experiment="remote") as run:
            model = LogisticRegression().fit(ROWS, LABELS)
            for step, loss in enumerate([0.9, 0.6, 0.4]):
                run.log_metric("loss", loss, step=step)
            run.log_dict({"rows": 6}, "data.json")
            logged = ws.registry.log_model(run, model, input_example=ROWS.head(2))
        version = ws.registry.register("remote-model", logged, description="through the server")
        assert version.version == 1 and version.seal  # sealed by the server's key
        with pytest.raises(ForbiddenError, match="admin"):
            ws.registry.set_alias("remote-model", "production", 1)
        found = ws.runs.search("params.C = '1.0'", experiment="remote")
        assert [r.run_id for r in found] == [run.run_id]
        assert [p.value for p in ws.runs.history(run.run_id, "loss")] == [0.9, 0.6, 0.4]
        assert {a["path"] for a in ws.runs.get(run.run_id).artifacts} == {"data.json", "model"}
        with pytest.raises(NotFoundError, match="no version 7"):
            ws.registry.get("remote-model/7")
    with remote(team, "admin") as ws:
        ws.registry.set_alias("remote-model", "production", 1)
        loaded = ws.registry.load("remote-model@production")
        assert list(loaded.predict(ROWS)["prediction"]) == list(model.predict(ROWS))
    # nothing but a model cache on the client: no database, no artifact store
    made = {
        p.relative_to(team["client"]).parts[:3] for p in team["client"].rglob("*") if p.is_file()
    }
    assert made <= {(".modelyard", "cache", "models")}, made
    with modelyard.Workspace(team["root"]) as server_side:  # the server's own view
        assert server_side.registry.get("remote-model@production").version == 1
        assert server_side.runs.get(run.run_id).metrics == {"loss": 0.4}


def test_the_cli_works_through_the_server_and_says_what_it_cannot(
    team: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with remote(team, "trainer") as ws, ws.start_run("cli-run") as run:
        run.log_metric("auc", 0.8)
    monkeypatch.setenv("MODELYARD_METADATA_URL", team["url"])
    monkeypatch.setenv("MODELYARD_SERVER_API_KEY", team["keys"]["reader"])
    folder = str(team["client"])
    code, out, err = run_cli(capsys, "runs", "list", "-w", folder)
    assert code == 0, err
    assert "cli-run" in out
    code, _out, err = run_cli(capsys, "keys", "list", "-w", folder)
    assert code == 2 and "team server" in err and "Traceback" not in err
    monkeypatch.setenv("MODELYARD_SERVER_API_KEY", "myd_000000000000_not-a-real-key-at-all")
    code, _out, err = run_cli(capsys, "runs", "list", "-w", folder)
    assert code == 2 and "key" in err.lower()


def test_a_served_model_follows_its_alias_through_the_server(team: dict[str, Any]) -> None:
    from modelyard.serving import create_app

    with remote(team, "admin") as ws:
        with ws.start_run("v1") as run:
            logged = ws.registry.log_model(
                run, LogisticRegression().fit(ROWS, LABELS), input_example=ROWS.head(2)
            )
        ws.registry.set_alias(
            "served", "production", ws.registry.register("served", logged).version
        )
        app = create_app(ws.registry, ["served@production"], poll_interval_s=0)
        with TestClient(app) as http:
            answer = http.post("/v1/models/served/predict", json={"x": 4.0, "y": 0.7})
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == 1
            assert http.get("/readyz").status_code == 200
        with pytest.raises(ConfigError, match="API keys"):
            create_app(ws.registry, ["served@production"], auth=True)


def test_an_upload_that_does_not_match_its_digest_is_refused(team: dict[str, Any]) -> None:
    digest = "sha256:" + "0" * 64
    answer = httpx.put(
        f"{team['url']}/api/modelyard/v1/artifacts/{digest}",
        content=b"not those bytes",
        headers={"Authorization": f"Bearer {team['keys']['trainer']}"},
    )
    assert answer.status_code == 400
    assert "does not match" in answer.json()["message"]
    with remote(team, "trainer") as ws:
        assert not ws.artifacts.exists(digest)
        stored = ws.artifacts.put(b"payload")
        assert ws.artifacts.get(stored) == b"payload"
    with remote(team, "reader") as ws, pytest.raises(ForbiddenError):
        ws.artifacts.put(b"a reader cannot write")


def test_a_run_survives_its_server_restarting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metrics logged while the server is down stay buffered and are stored once it is
    back; nothing is lost or stored twice."""
    monkeypatch.setattr("modelyard.remote._client.BACKOFF_S", (0.1, 0.2))
    root = tmp_path / "server"
    modelyard.Workspace.init(root).close()
    port = free_port()
    (tmp_path / "client").mkdir()
    with team_server(root, port=port) as url:
        ws = modelyard.Workspace(tmp_path / "client", metadata_url=url)
        run = ws.start_run("long")
        run.log_metric("loss", 1.0, step=0)
        run.flush()
    # the block stopped the server; log while it is down
    run.log_metric("loss", 0.5, step=1)
    with pytest.raises(BackendUnavailableError, match="cannot reach the team server"):
        run.flush()
    with team_server(root, port=port):
        run.log_metric("loss", 0.25, step=2)
        run.end()
        points = [(p.step, p.value) for p in ws.runs.history(run.run_id, "loss")]
        assert points == [(0, 1.0), (1, 0.5), (2, 0.25)]
        assert ws.runs.get(run.run_id).status == "finished"
    ws.close()


def test_plain_http_to_another_host_is_refused(tmp_path: Path) -> None:
    ws = modelyard.Workspace(tmp_path, metadata_url="http://models.example.com:5000")
    with pytest.raises(ConfigError, match="https"):
        ws.runs.search()


def test_the_codec_rebuilds_only_modelyards_own_types() -> None:
    from modelyard.errors import InvalidInputError
    from modelyard.remote import decode, encode

    value = {"$weird": (1, float("inf")), "n": [float("nan")]}
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["$weird"] == (1, float("inf")) and back["n"][0] != back["n"][0]
    with pytest.raises(InvalidInputError, match="unknown value type"):
        decode({"$type": "Popen", "fields": {"args": ["rm", "-rf", "/"]}})
    with pytest.raises(InvalidInputError, match="cannot be sent"):
        encode(object())


def test_an_unreachable_server_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelyard.remote._client.BACKOFF_S", (0.05,))
    ws = modelyard.Workspace(tmp_path, metadata_url="http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="cannot reach the team server"):
        ws.runs.search()
    assert time.monotonic() - started < 5


def test_importing_from_a_team_server_keeps_modelyards_own_versions_loadable(
    team: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.server import import_mlflow

    with remote(team, "admin") as ws:
        with ws.start_run("native-for-import") as run:
            logged = ws.registry.log_model(
                run, LogisticRegression().fit(ROWS, LABELS), input_example=ROWS.head(2)
            )
        version = ws.registry.register("native-model", logged)
        ws.registry.set_alias("native-model", "production", version.version)
        assert ws.registry.traffic("native-model") is None  # what serving polls
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", team["keys"]["reader"])
    with modelyard.Workspace.init(tmp_path / "copy") as copy:
        summary = import_mlflow(copy, team["url"])
        assert summary.versions >= 1
        copied = copy.registry.get("native-model@production")
        assert copied.flavor == "sklearn" and copied.signature.inputs.names == ["x", "y"]
        answer = copy.registry.load("native-model@production").predict(ROWS)
        assert list(answer["prediction"]) == LABELS
