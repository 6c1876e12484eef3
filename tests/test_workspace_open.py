"""Opening a workspace never creates one: a typo is an error, not an empty workspace.

Also the one-line errors for a broken ``modelyard.toml`` and out-of-range ports.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import modelyard
from cli_support import run_cli
from modelyard.errors import ConfigError, ModelyardError, WorkspaceNotFoundError


def one_line_error(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_an_empty_folder_is_not_a_workspace_and_stays_empty(tmp_path: Path) -> None:
    ws = modelyard.Workspace(tmp_path)
    with pytest.raises(WorkspaceNotFoundError) as info:
        ws.registry.list()
    assert str(info.value) == (
        f"no modelyard workspace at '{tmp_path}'; run 'modelyard init {tmp_path}' "
        f"(in Python: Workspace.init('{tmp_path}'))"
    )
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ModelyardError)
    assert info.value.code == "workspace_not_found"
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_a_missing_folder_is_not_a_workspace_even_with_a_server_database(
    tmp_path: Path, pg_url: str
) -> None:
    typo = tmp_path / "typo"
    with pytest.raises(WorkspaceNotFoundError, match="no modelyard workspace at"):
        modelyard.Workspace(typo, environ={"MODELYARD_METADATA_URL": pg_url}).config  # noqa: B018
    assert not typo.exists()


def test_create_and_init_create_the_workspace(tmp_path: Path) -> None:
    with modelyard.Workspace(tmp_path / "a", create=True) as ws:
        assert ws.registry.list() == []
    assert (tmp_path / "a" / "modelyard.toml").is_file()
    with modelyard.Workspace(tmp_path / "a") as ws:  # now it is one
        assert ws.registry.list() == []
    with modelyard.Workspace.init(tmp_path / "b") as ws:
        assert ws.registry.list() == []


def test_an_empty_folder_configured_by_environment_alone_is_a_workspace(
    tmp_path: Path, pg_url: str
) -> None:
    # A container: an empty working folder, the metadata in PostgreSQL.
    with modelyard.Workspace(tmp_path, environ={"MODELYARD_METADATA_URL": pg_url}) as ws:
        assert ws.registry.list() == []
    existing = tmp_path / "meta.db"
    with modelyard.Workspace(tmp_path / "x", create=True, metadata_url=f"sqlite:///{existing}"):
        pass
    sqlite3.connect(existing).close()
    (tmp_path / "empty").mkdir()
    environ = {"MODELYARD_METADATA_URL": f"sqlite:///{existing}"}
    with modelyard.Workspace(tmp_path / "empty", environ=environ) as ws:
        assert ws.registry.list() == []


def test_a_sqlite_metadata_url_to_a_missing_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    modelyard.Workspace.init(root).close()
    for wrong in (tmp_path / "wrong.db", tmp_path / "no" / "such" / "folder.db"):
        environ = {"MODELYARD_METADATA_URL": f"sqlite:///{wrong}"}
        with pytest.raises(ConfigError) as info:
            modelyard.Workspace(root, environ=environ).metadata  # noqa: B018
        message = str(info.value)
        assert f"metadata database {wrong} does not exist" in message
        assert "modelyard init" in message and "env MODELYARD_METADATA_URL" in message
        assert "\n" not in message
        assert not wrong.exists()
    assert f"nor does its folder {tmp_path / 'no' / 'such'};" in message
    assert not (tmp_path / "no").exists()


def test_the_default_database_of_a_workspace_appears_by_itself(tmp_path: Path) -> None:
    # A project cloned from git holds modelyard.toml but no .modelyard/ yet.
    (tmp_path / "modelyard.toml").write_text("[tracking]\nexperiment = 'x'\n")
    with modelyard.Workspace(tmp_path) as ws:
        assert ws.registry.list() == []
    assert (tmp_path / ".modelyard" / "meta.db").is_file()


def test_init_creates_a_configured_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "data" / "meta.db"
    monkeypatch.setenv("MODELYARD_METADATA_URL", f"sqlite:///{db}")
    code, _, err = run_cli(capsys, "init", str(tmp_path / "ws"))
    assert code == 0, err
    assert db.is_file()
    code, out, err = run_cli(capsys, "models", "list", "-w", str(tmp_path / "ws"))
    assert code == 0 and "0 model(s)" in out, err


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list"],
        ["models", "show", "x@production"],
        ["runs", "list"],
        ["config", "show"],
        ["serve", "x@production"],
        ["monitor", "drift", "x@production"],
        ["monitor", "quality", "x"],
        ["features", "get-online", "-f", "trips:n", "-k", '{"id": 1}'],
        ["jobs", "list"],
        ["release", "history", "x"],
    ],
)
def test_read_commands_refuse_a_folder_that_is_not_a_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    typo = tmp_path / "typo"
    code, out, err = run_cli(capsys, *command, "-w", str(typo))
    assert f"no modelyard workspace at '{typo}'" in one_line_error(code, err)
    assert out == ""
    assert not typo.exists()


def test_models_list_in_an_empty_current_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "models", "list")
    assert f"no modelyard workspace at '.' ({tmp_path})" in one_line_error(code, err)
    assert "0 model" not in out and list(tmp_path.iterdir()) == []


# -- a broken modelyard.toml -----------------------------------------------------------------


def test_a_modelyard_toml_that_is_a_folder_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "modelyard.toml").mkdir()
    code, _, err = run_cli(capsys, "models", "list", "-w", str(tmp_path))
    assert "modelyard.toml is a folder, not a file" in one_line_error(code, err)


def test_a_modelyard_toml_that_is_not_utf8_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "modelyard.toml").write_bytes(b"[serve]\nhost = '\xe9t\xe9'\n")  # Latin-1
    code, _, err = run_cli(capsys, "config", "show", "-w", str(tmp_path))
    assert "modelyard.toml: not UTF-8 text (byte 16); save it as UTF-8" in one_line_error(code, err)


# -- ports -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "99999"], "--port 99999: expected a port from 1 to 65535"),
        (["--port", "0"], "--port 0: expected a port from 1 to 65535"),
        (["--grpc-port", "-1"], "--grpc-port -1: expected a port from 1 to 65535"),
    ],
)
def test_serve_refuses_a_port_out_of_range_in_one_line(
    sqlite_workspace: modelyard.Workspace,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    expected: str,
) -> None:
    root = str(sqlite_workspace.root)
    code, _, err = run_cli(capsys, "serve", "x@production", "-w", root, *args)
    assert expected in one_line_error(code, err)


def test_a_port_setting_out_of_range_names_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_SERVE_PORT", "70000")
    code, _, err = run_cli(capsys, "quickstart", str(tmp_path / "qs"), "--no-serve")
    assert "MODELYARD_SERVE_PORT (env) serve.port = 70000: expected 1 to 65535" in (
        one_line_error(code, err)
    )
    with pytest.raises(ConfigError, match="argument serve.port = 99999: expected 1 to 65535"):
        modelyard.Workspace.init(tmp_path / "ws", environ={}, serve_port=99999).config  # noqa: B018
