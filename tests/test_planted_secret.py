"""A secret planted in a setting reference never comes out: not on the screen, not in a
log line, not in anything written to the workspace.

The workspace's metadata URL is ``env:META_URL``, a real PostgreSQL URL whose password is
the planted secret (the test server trusts every password, so the URL works). The test
trains and registers a model, runs the commands a user would, serves the model in a real
process (predict, feedback, rollback, metrics, docs, a bad request, a bad key), then greps
every output, the server log and every file under the workspace for the secret.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest

import modelyard
from cli_support import run_cli
from modelyard._redact import redact
from modelyard.errors import ConfigError
from registry_support import doubler
from server_support import running_server

PLANTED = "Pl4nted-s3cret-9d1f"


@pytest.fixture
def planted(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    url = pg_url.replace("://postgres@", f"://postgres:{PLANTED}@", 1)
    assert PLANTED in url, pg_url
    monkeypatch.setenv("META_URL", url)
    root = tmp_path / "ws"
    root.mkdir()
    (root / "modelyard.toml").write_text('[metadata]\nurl = "env:META_URL"\n')
    return root, url


def test_a_planted_secret_appears_in_no_output_log_or_file(
    planted: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = planted
    outputs: list[str] = []
    with modelyard.Workspace(root) as ws:
        assert ws.metadata.dialect == "postgresql"  # the reference was read and used
        with ws.start_run("train", params={"lr": 0.1}) as run:
            logged = ws.registry.log_model(run, doubler(), input_example=pd.DataFrame({"a": [1.0]}))
        for _ in range(2):
            v = ws.registry.register("iris", logged)
            ws.registry.set_alias("iris", "production", v.version)
        outputs += [
            repr(ws),
            repr(ws.config),
            repr(ws.metadata),
            ws.config.describe("metadata.url"),
        ]
    commands = [
        ["config", "show"],
        ["models", "list"],
        ["models", "show", "iris"],
        ["runs", "list"],
        ["keys", "create", "--role", "admin", "--name", "ops"],
        ["keys", "list"],
        ["audit"],
        ["monitor", "history", "iris"],
        ["models", "alias", "iris", "production", "nope"],  # a bad input: an error message
    ]
    admin = ""
    for command in commands:
        code, out, err = run_cli(capsys, *command, "-w", str(root))
        outputs += [out, err]
        if command[:2] == ["keys", "create"]:
            admin = out.strip()
    assert admin.startswith("myd_")
    with running_server(
        root, ["iris@production"], "--require-auth", env={"META_URL": url}
    ) as server:
        headers = {"Authorization": f"Bearer {admin}"}
        answers = [
            httpx.post(f"{server.url}/v1/models/iris/predict", json={"a": 1.0}, headers=headers),
            httpx.post(f"{server.url}/v1/models/iris/predict", json={"b": 1.0}, headers=headers),
            httpx.post(f"{server.url}/v1/models/iris/predict", json={"a": 1.0}),
            httpx.get(f"{server.url}/metrics", headers=headers),
            httpx.get(f"{server.url}/openapi.json", headers=headers),
            httpx.get(f"{server.url}/readyz"),
            httpx.get(f"{server.url}/v1/models", headers=headers),
            httpx.post(f"{server.url}/v1/models/iris/rollback", json={}, headers=headers),
        ]
        rid = answers[0].json()["request_id"]
        answers.append(
            httpx.post(
                f"{server.url}/v1/feedback", json={"request_id": rid, "label": 2.0}, headers=headers
            )
        )
        outputs += [r.text + str(r.headers) for r in answers]
        assert answers[0].status_code == 200 and answers[7].status_code == 200
    outputs.append(server.log_path.read_text())
    leaks = [o for o in outputs if PLANTED in o]
    assert leaks == []
    # The API key's secret, printed once by keys create, is nowhere else either.
    secret = admin.split("_", 2)[2]
    assert [o for o in outputs if secret in o] == [admin + "\n"]
    written = [
        p
        for p in root.rglob("*")
        if p.is_file() and (PLANTED.encode() in p.read_bytes() or secret.encode() in p.read_bytes())
    ]
    assert written == []


def test_a_missing_reference_is_a_one_line_error_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "modelyard.toml").write_text('[metadata]\nurl = "env:NOT_SET_ANYWHERE"\n')
    code, out, err = run_cli(capsys, "models", "list", "-w", str(root))
    assert code == 2
    assert "metadata.url" in err and "NOT_SET_ANYWHERE is not set" in err
    (root / "modelyard.toml").write_text('[metadata]\nurl = "file:/nonexistent/secret"\n')
    code, out, err = run_cli(capsys, "models", "list", "-w", str(root))
    assert code == 2 and "cannot read /nonexistent/secret" in err


def test_a_file_reference_is_read_at_use_and_hidden_everywhere_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "port"
    secret_file.write_text("8123\n")
    token = tmp_path / "token"
    token.write_text("tok-" + PLANTED + "\n")
    root = tmp_path / "ws"
    modelyard.Workspace.init(root).close()
    monkeypatch.setenv("MODELYARD_SERVE_PORT", f"file:{secret_file}")
    monkeypatch.setenv("MODELYARD_ONLINE_URL", f"file:{token}")
    ws = modelyard.Workspace(root)
    assert ws.config["serve.port"] == 8123  # a number is read when the config loads
    assert ws.config["online.url"] == f"file:{token}"  # a string only where it is used
    assert ws.config.value("online.url") == "tok-" + PLANTED
    # From now on the value is hidden wherever it would be printed.
    assert PLANTED not in redact(f"could not open tok-{PLANTED}")
    with pytest.raises(ConfigError) as caught:
        ws.online  # noqa: B018 - not a URL any store takes
    assert PLANTED not in str(caught.value)


def test_a_value_read_from_a_reference_is_hidden_in_any_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    modelyard.Workspace.init(root).close()
    monkeypatch.setenv("MYEXEC", "S3cretPW-exec")  # not a URL, not a secret-looking name
    monkeypatch.setenv("MODELYARD_EXECUTOR_URL", "env:MYEXEC")
    source = tmp_path / "in.parquet"
    pd.DataFrame({"a": [1.0]}).to_parquet(source)
    code, out, err = run_cli(
        capsys, "score", "m@production", "-i", str(source), "-o", str(tmp_path / "o.parquet"),
        "-w", str(root),
    )  # fmt: skip
    assert code == 2 and "executor" in err
    assert "S3cretPW-exec" not in out + err
