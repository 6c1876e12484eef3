"""``modelyard quickstart`` with the port it would serve on already taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard
from cli_support import run_cli


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on, as a second server left running would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _versions(folder: Path, model: str) -> list[int]:
    with modelyard.Workspace(folder) as ws:
        if model not in {m.name for m in ws.registry.list()}:
            return []
        return sorted(v.version for v in ws.registry.versions(model))


def test_a_busy_port_stops_quickstart_before_it_trains_or_registers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], busy_port: int
) -> None:
    folder = tmp_path / "qs"
    code, _, err = run_cli(capsys, "quickstart", str(folder), "--no-serve")
    assert code == 0, err
    assert _versions(folder, "breast_cancer") == [1]

    for _ in range(2):  # each retry used to register a version and move production
        code, out, err = run_cli(capsys, "quickstart", str(folder), "--port", str(busy_port))
        assert code == 2, out + err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and f"port {busy_port}" in lines[0], err
        assert "already in use" in lines[0] and "--port" in lines[0]
        assert "training" not in out and "registered" not in out

    assert _versions(folder, "breast_cancer") == [1]
    with modelyard.Workspace(folder) as ws:
        assert ws.registry.get("breast_cancer@production").version == 1


def test_a_busy_port_stops_a_fresh_quickstart_with_no_model_registered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], busy_port: int
) -> None:
    folder = tmp_path / "fresh"
    code, _, err = run_cli(capsys, "quickstart", str(folder), "--port", str(busy_port))
    assert code == 2 and f"port {busy_port}" in err
    assert _versions(folder, "breast_cancer") == []


def test_a_port_out_of_range_is_a_usage_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "quickstart", str(tmp_path / "qs"), "--port", "99999")
    assert code == 2 and "Traceback" not in err
    assert "Invalid value for '--port'" in err and "65535" in err
    assert not (tmp_path / "qs").exists()


def test_a_busy_port_stops_a_blueprint_quickstart_before_it_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], busy_port: int
) -> None:
    folder = tmp_path / "bp"
    args = ["quickstart", "--blueprint", "sentiment", str(folder), "--port", str(busy_port)]
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and f"port {busy_port}" in err and "already in use" in err, out + err
    with modelyard.Workspace(folder) as ws:
        assert ws.registry.list() == []
