"""``modelyard build``: the build context of a model's image, bad input, and a real image.

No container registry is reachable from these machines, so the real-image test makes its
base image locally (debootstrap of Debian bookworm with python3, imported into podman)
once per session, builds the quickstart-like image on it, runs it with a published port
and talks to it. Wheels are cached in pytest's cache folder, so only the first run of
a machine downloads them.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_diabetes

import modelyard
from build_support import (
    BASE_IMAGE,
    container_key,
    dangling,
    remove_image,
    run,
    run_container,
)
from cli_support import run_cli
from monitor_support import exchange, train_diabetes

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def diabetes(sqlite_workspace: modelyard.Workspace) -> modelyard.Workspace:
    """diabetes@production is version 1 (scikit-learn Ridge); version 2 has no alias."""
    train_diabetes(sqlite_workspace)
    first = sqlite_workspace.registry.get("diabetes@production")
    sqlite_workspace.registry.register("diabetes", f"runs:/{first.run_id}/model")
    return sqlite_workspace


def _build(capsys: pytest.CaptureFixture[str], ws: modelyard.Workspace, *args: str) -> Any:
    return run_cli(capsys, "build", *args, "-w", str(ws.root))


def _pins(wheelhouse: Path) -> dict[str, str]:
    lines = (wheelhouse / "requirements.txt").read_text().split()
    return dict(line.split("==", 1) for line in lines)


def test_context_holds_the_model_version_every_wheel_and_a_dockerfile(
    diabetes: modelyard.Workspace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    wheel_cache: Path,
) -> None:
    out = tmp_path / "image"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier build")
    options = ["--wheelhouse", str(wheel_cache), "--force", "--with", "redis"]

    code, stdout, stderr = _build(capsys, diabetes, "diabetes@production", "-o", str(out), *options)

    assert code == 0, stderr
    assert f"wheels for Python {PYTHON}" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "Dockerfile",
        "entrypoint.sh",
        "modelyard-build.json",
        "wheelhouse",
        "workspace",
    ]
    dockerfile = (out / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE=python:{PYTHON}-slim" in dockerfile
    assert "pip install --no-index" in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert os.access(out / "entrypoint.sh", os.X_OK)
    assert (
        "exec /opt/modelyard/bin/modelyard serve diabetes@production"
        in (out / "entrypoint.sh").read_text()
    )
    manifest = json.loads((out / "modelyard-build.json").read_text())
    assert (manifest["python"], manifest["model"]["version"]) == (PYTHON, 1)

    # Every dependency, at the version running here, and nothing from the test extra.
    pins = _pins(out / "wheelhouse")
    for name in ("scikit-learn", "numpy", "pandas", "fastapi", "uvicorn", "sqlalchemy"):
        assert pins[name] == md.version(name), name
    assert "modelyard" in pins
    assert pins["redis"] == md.version("redis")  # named with --with
    assert not {"pytest", "hypothesis", "moto", "ray", "torch", "mypy"} & set(pins)
    assert not {"duckdb", "grpcio-tools"} & set(pins)  # the features extra, a build tool
    wheels = {
        re.sub(r"[-_.]+", "-", w.name.split("-")[0]).lower() for w in out.glob("wheelhouse/*.whl")
    }
    assert wheels == set(pins)
    # What the image does, offline: the wheelhouse alone satisfies its requirements.
    offline = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--find-links",
            str(out / "wheelhouse"),
            "--requirement",
            str(out / "wheelhouse" / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert offline.returncode == 0, offline.stderr

    # The workspace carries exactly that version, under its own number, and it predicts.
    source = diabetes.registry.get("diabetes@production")
    with modelyard.Workspace(out / "workspace", environ={}) as copy:
        assert [m.name for m in copy.registry.list()] == ["diabetes"]
        assert [v.version for v in copy.registry.versions("diabetes")] == [1]
        version = copy.registry.get("diabetes@production")
        assert (version.artifact, version.signature) == (source.artifact, source.signature)
        rows = load_diabetes(as_frame=True).data.head(5)
        got = copy.registry.load(version).predictor.predict(rows)
    want = diabetes.registry.load(source).predictor.predict(rows)
    assert list(got["prediction"]) == list(want["prediction"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["nope@production"], "model 'nope' is not registered", id="unknown-model"),
        pytest.param(["diabetes@staging"], "has no alias 'staging'", id="unknown-alias"),
        pytest.param(["diabetes/0"], "must be a positive integer", id="bad-ref"),
        pytest.param(
            ["diabetes@production", "--base-image", "python 3"], "not an image", id="bad-base"
        ),
        pytest.param(["diabetes@production", "--image", "Not A Tag"], "not an image", id="bad-tag"),
        pytest.param(
            ["diabetes@production", "--image", "x:1"], "needs podman or docker", id="no-engine"
        ),
        pytest.param(
            ["bound@production"], "online features from the feature service 'trips'", id="bound"
        ),
        pytest.param(
            ["diabetes@production", "--with", "no-such-dist"], "not installed", id="bad-with"
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    diabetes: modelyard.Workspace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    first = diabetes.registry.get("diabetes@production")
    bound = diabetes.registry.register(
        "bound", f"runs:/{first.run_id}/model", features=modelyard.FeatureBinding("trips")
    )
    diabetes.registry.set_alias("bound", "production", bound.version)
    empty = tmp_path / "no-engines"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no podman, no docker: for the no-engine case
    out = tmp_path / "image"

    code, _, stderr = _build(capsys, diabetes, *args, "-o", str(out))

    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-engines", "ws"]


def test_a_folder_that_is_not_empty_is_kept_without_force(
    diabetes: modelyard.Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "image"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    code, _, stderr = _build(capsys, diabetes, "diabetes@production", "-o", str(out))

    assert code == 2
    assert "is not empty; pass --force" in stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image", "ws"]


# -- the real image --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_image_builds_runs_answers_as_non_root_and_stops_on_sigterm(
    podman: str,
    sqlite_workspace: modelyard.Workspace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    wheel_cache: Path,
) -> None:
    x = train_diabetes(sqlite_workspace)
    row = {k: float(v) for k, v in x.iloc[0].items()}
    path = "/v1/models/diabetes/predict"
    (expected,) = exchange(sqlite_workspace, "diabetes", [(path, row)])
    tag = f"localhost/modelyard-test-{uuid.uuid4().hex[:8]}:1"
    before = dangling(podman)
    container = None
    try:
        args = ["-o", str(tmp_path / "image"), "--image", tag, "--base-image", BASE_IMAGE]
        args += ["--wheelhouse", str(wheel_cache)]
        code, stdout, stderr = _build(capsys, sqlite_workspace, "diabetes@production", *args)
        assert code == 0, stderr + stdout[-3000:]
        assert f"built {tag} with podman" in stdout

        container, url = run_container(podman, tag)

        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        # The image binds 0.0.0.0: without a key, nothing but the health checks answers.
        refused = httpx.post(f"{url}{path}", json=row, timeout=10)
        assert refused.status_code == 401, refused.text
        answer = httpx.post(
            f"{url}{path}", json=row, timeout=10, headers=container_key(podman, container)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == expected.json()["prediction"]
        assert answer.json()["version"] == 1
        # Serving needs neither the feature store's engine nor build tools.
        probe = (
            "import importlib.util as u; "
            "print([m for m in ('duckdb', 'grpc_tools', 'pip', 'setuptools') if u.find_spec(m)])"
        )
        found = run(podman, "exec", container, "/opt/modelyard/bin/python", "-c", probe)
        assert found.stdout.strip() == "[]", found.stderr
        uid = run(podman, "exec", container, "id", "-u").stdout.strip()
        assert uid.isdigit() and int(uid) != 0
        assert run(podman, "healthcheck", "run", container).returncode == 0

        began = time.monotonic()
        stopped = run(podman, "stop", "--time", "10", container)
        elapsed = time.monotonic() - began
        assert stopped.returncode == 0, stopped.stderr
        assert elapsed < 5, f"podman stop took {elapsed:.1f} s: SIGTERM did not stop the server"
        state = run(podman, "inspect", "--format", "{{.State.ExitCode}}", container)
        assert state.stdout.strip() == "0"  # drained and exited, not killed
    finally:
        if container is not None:
            run(podman, "rm", "--force", container)
        # The build stage stays behind as an untagged image; remove only what this made.
        remove_image(podman, tag, before)
