"""The command line as a user runs it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from cli_support import run_cli

MODELYARD = [sys.executable, "-m", "modelyard"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def quickstarted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "qs"
    code, out, err = run_cli(capsys, "quickstart", str(folder), "--no-serve")
    assert code == 0, err
    return folder


def test_init_writes_a_commented_config_and_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "init", str(tmp_path / "p"))
    assert code == 0
    text = (tmp_path / "p" / "modelyard.toml").read_text()
    assert "# metadata database" in text and "[metadata]" in text
    assert (tmp_path / "p" / ".modelyard" / "meta.db").exists()
    code, out, _ = run_cli(capsys, "init", str(tmp_path / "p"))
    assert code == 0 and "kept existing" in out


def test_config_show_names_the_source_of_each_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "modelyard.toml").write_text('[serve]\nport = 9001\n[tracking]\nexperiment = "x"\n')
    monkeypatch.setenv("MODELYARD_TRACKING_EXPERIMENT", "from-env")
    code, out, _ = run_cli(capsys, "config", "show", "-w", str(folder))
    assert code == 0
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert "9001" in lines["serve.port"] and "file" in lines["serve.port"]
    assert "from-env" in lines["tracking.experiment"] and "env" in lines["tracking.experiment"]
    assert "default" in lines["serve.host"]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[serve]\nprot = 1\n", "did you mean 'serve.port'"),
        ("[serve\nport = 1\n", "cannot parse TOML"),
        ('[serve]\nport = "x"\n', "expected int"),
    ],
    ids=["unknown-key", "unparsable", "wrong-type"],
)
def test_bad_config_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: str
) -> None:
    (tmp_path / "modelyard.toml").write_text(toml)
    code, out, err = run_cli(capsys, "models", "list", "-w", str(tmp_path))
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and err.startswith("error:")


def test_quickstart_records_the_run_and_registers_production(
    quickstarted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "models", "list", "-w", str(quickstarted))
    assert code == 0 and "breast_cancer" in out and "production → 1" in out
    code, out, _ = run_cli(
        capsys, "models", "show", "breast_cancer@production", "-w", str(quickstarted)
    )
    assert code == 0
    assert "sklearn" in out and "accuracy" in out and "dataset train" in out
    code, out, _ = run_cli(
        capsys, "runs", "list", "-w", str(quickstarted), "-f", "metrics.accuracy > 0.9"
    )
    assert code == 0 and "1 run(s)" in out and "finished" in out


def test_the_quickstart_model_can_be_monitored_for_drift(quickstarted: Path) -> None:
    import modelyard

    ws = modelyard.Workspace(quickstarted)
    try:
        reference = ws.registry.reference_profile("breast_cancer@production")
        assert reference is not None and "mean radius" in reference.columns
    finally:
        ws.close()


def test_the_quickstart_model_passes_a_release_check_on_its_holdout(
    quickstarted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ["-w", str(quickstarted)]
    assert run_cli(capsys, "models", "alias", "breast_cancer", "staging", "1", *w)[0] == 0
    gates = ["--gate", "roc_auc >= 0.95", "--gate", "accuracy >= champion.accuracy"]
    code, out, err = run_cli(capsys, "release", "check", "breast_cancer", *gates, *w)
    assert code == 0, err
    assert "143 rows" in out and "holdout 'test'" in out and "gates passed" in out
    code, out, _ = run_cli(capsys, "release", "check", "breast_cancer", "--gate", "roc_auc > 1", *w)
    assert code == 1 and "fail" in out


def test_runs_show_and_compare(quickstarted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "quickstart", str(quickstarted), "--no-serve")
    assert code == 0, err
    import modelyard

    runs = modelyard.Workspace(quickstarted).runs.search(order_by="start_time")
    assert len(runs) == 2
    code, out, _ = run_cli(capsys, "runs", "show", runs[0].run_id, "-w", str(quickstarted))
    assert code == 0 and "seed" in out and "42" in out and "param C" in out
    ids = [r.run_id for r in runs]
    code, out, _ = run_cli(capsys, "runs", "compare", *ids, "-w", str(quickstarted))
    assert code == 0 and "metric accuracy" in out
    code, out, _ = run_cli(capsys, "runs", "experiments", "-w", str(quickstarted))
    assert code == 0 and "1 experiment(s)" in out and "│ 2 " in out
    code, out, _ = run_cli(capsys, "models", "show", "breast_cancer", "-w", str(quickstarted))
    assert code == 0 and "production" in out


def test_alias_set_move_delete(quickstarted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = ["-w", str(quickstarted)]
    run_cli(capsys, "quickstart", str(quickstarted), "--no-serve")  # version 2, production → 2
    assert run_cli(capsys, "models", "alias", "breast_cancer", "staging", "1", *w)[0] == 0
    code, out, _ = run_cli(capsys, "models", "alias", "breast_cancer", "production", "1", *w)
    assert code == 0 and "version 1" in out
    code, out, _ = run_cli(capsys, "models", "alias", "breast_cancer", "staging", "--delete", *w)
    assert code == 0
    code, _, err = run_cli(capsys, "models", "alias", "breast_cancer", "staging", *w)
    assert code == 2 and "no alias 'staging'" in err and "production -> 1" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["models", "show", "breast_cancr@production"], "did you mean 'breast_cancer'"),
        (["models", "show", "breast_cancer/9"], "has no version 9"),
        (["models", "alias", "breast_cancer", "production", "7"], "has no version 7"),
        (["runs", "show", "0" * 32], "does not exist"),
        (["runs", "list", "-f", "metrics.x >>> 1"], "cannot parse filter"),
    ],
)
def test_bad_references_are_one_line_exit_2(
    quickstarted: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, _, err = run_cli(capsys, *args, "-w", str(quickstarted))
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # one line, maybe wrapped by the terminal width


def test_unreachable_database_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_METADATA_URL", "postgresql://postgres:secret@127.0.0.1:1/x")
    code, _, err = run_cli(capsys, "models", "list", "-w", str(tmp_path))
    assert code == 2
    assert "cannot open the metadata database" in err and "MODELYARD_METADATA_URL" in err
    assert "secret" not in err and "Traceback" not in err


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("server did not become ready")


def test_quickstart_serves_and_its_curl_line_returns_a_prediction(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*MODELYARD, "quickstart", str(tmp_path / "qs"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "4000"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        _a_new_user_finds_run_model_traffic_and_drift(url, tmp_path / "qs")
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        if proc.stdout and not proc.stdout.closed:
            proc.communicate()
    # uvicorn drains, then re-raises SIGTERM so that the parent sees why it stopped.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete." in err
    assert f"dashboard: {url}/ui" in out
    curl = next(line for line in out.splitlines() if line.startswith("curl "))
    assert f"127.0.0.1:{port}/v1/models/breast_cancer/predict" in curl
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert logs and all("level" in line for line in logs)
    assert any(line.get("model") == "breast_cancer" for line in logs)
    assert len(logs) == len([line for line in err.splitlines() if line.strip()]), err


def _a_new_user_finds_run_model_traffic_and_drift(url: str, folder: Path) -> None:
    """The quickstart's dashboard link: the run, the model, live traffic and drift."""
    runs = httpx.get(f"{url}/", follow_redirects=True)
    assert runs.status_code == 200 and "quickstart" in runs.text and "accuracy" in runs.text
    model = httpx.get(f"{url}/ui/models/breast_cancer")
    assert model.status_code == 200 and "production" in model.text
    row = pd.read_parquet(folder / "data" / "holdout.parquet").iloc[0].to_dict()
    for _ in range(3):
        answered = httpx.post(f"{url}/v1/models/breast_cancer/predict", json=row)
        assert answered.status_code == 200, answered.text
    serving = httpx.get(f"{url}/ui/serving/panel")
    assert re.search(r'data-model="breast_cancer".*?<td class="num">3</td>', serving.text, re.S)
    drift = httpx.get(f"{url}/ui/monitoring/breast_cancer")
    assert drift.status_code == 200 and "<svg" in drift.text  # the first batch's drift


def serve_command(workspace: Path, port: int) -> list[str]:
    return [
        *MODELYARD,
        "serve",
        "breast_cancer@production",
        "--port",
        str(port),
        "-w",
        str(workspace),
    ]


@pytest.fixture
def server(quickstarted: Path) -> Any:
    port = free_port()
    proc = subprocess.Popen(
        serve_command(quickstarted, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield url, proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            if proc.stdout is not None and not proc.stdout.closed:
                proc.communicate(timeout=30)  # also closes the pipes
            proc.wait(timeout=30)
        finally:
            proc.kill()


def test_served_curl_line_and_json_logs(server: Any, quickstarted: Path) -> None:
    from modelyard.cli.quickstart import curl_line

    url, proc, port = server
    example = {"mean radius": 19.17, "mean texture": 24.8}
    import modelyard

    version = modelyard.Workspace(quickstarted).registry.get("breast_cancer@production")
    example = {name: 1.0 for name in version.signature.inputs.names}
    line = curl_line("127.0.0.1", port, example)
    if shutil.which("curl"):
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
        body = json.loads(result.stdout)
    else:  # the same request without curl
        body = httpx.post(f"{url}/v1/models/breast_cancer/predict", json=example).json()
    assert body["model"] == "breast_cancer" and body["version"] == 1
    assert body["prediction"]["prediction"] in ("malignant", "benign")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    predict_logs = [
        json.loads(x) for x in err.splitlines() if x.startswith("{") and '"predict"' in x
    ]
    assert predict_logs and predict_logs[-1]["request_id"] == body["request_id"]
    assert predict_logs[-1]["version"] == 1 and "latency_ms" in predict_logs[-1]


def test_serve_on_a_busy_port_is_one_line_exit_2(server: Any, quickstarted: Path) -> None:
    _, _, port = server
    result = subprocess.run(
        serve_command(quickstarted, port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "already in use" in result.stderr and "Traceback" not in result.stderr
