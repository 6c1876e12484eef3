"""A model version's files cannot be swapped: not by editing the metadata database, not by
changing the local cache copy, not by replacing a blob in the artifact store. Each
attempt is refused with a clear error before any file is unpickled, so a swapped-in
pickle never runs; ``--require-safe-formats`` refuses pickles altogether.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
from cli_support import run_cli
from modelyard.backends.metadata import tables as t
from modelyard.errors import ConfigError, IntegrityError
from registry_support import doubler


class Marker:
    """Unpickling this runs a command: what a hostile "model" does."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def _triple() -> Any:
    def triple(frame: pd.DataFrame) -> Any:
        return frame["a"] * 3

    return triple


EXAMPLE = pd.DataFrame({"a": [1.0, 2.0]})


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    ws = modelyard.Workspace.init(tmp_path / "ws", environ={})
    with ws.start_run("train") as run:
        good = ws.registry.log_model(run, doubler(), input_example=EXAMPLE)
        other = ws.registry.log_model(run, _triple(), input_example=EXAMPLE)
    ws.registry.register("iris", good)
    ws.other = other  # another logged model, for swaps
    try:
        yield ws
    finally:
        ws.close()


def _edit_version(ws: Any, **values: Any) -> None:
    mv = t.model_versions
    with ws.metadata.write() as conn:
        conn.execute(mv.update().where(mv.c.name == "iris", mv.c.version == 1).values(**values))


def test_a_registered_version_is_sealed_and_loads(ws: Any) -> None:
    version = ws.registry.get("iris/1")
    assert version.seal is not None and version.seal.startswith("hmac-sha256:")
    assert list(ws.registry.load("iris/1").predictor.predict(EXAMPLE)["a"]) == [2.0, 4.0]


def test_a_version_pointed_at_other_files_in_the_database_is_refused(ws: Any) -> None:
    _edit_version(ws, artifact=ws.other.artifact)  # an attacker with write access to the DB
    with pytest.raises(IntegrityError, match="seal does not match"):
        ws.registry.load("iris/1")


def test_a_cleared_seal_is_refused(ws: Any) -> None:
    _edit_version(ws, seal=None)
    with pytest.raises(IntegrityError, match="has no seal"):
        ws.registry.load("iris/1")


def test_a_tampered_cache_copy_is_refused_before_it_is_unpickled(ws: Any, tmp_path: Path) -> None:
    ws.registry.load("iris/1")  # fills the local cache
    (cached,) = ws.registry.cache_dir.glob("*/model.cloudpickle")
    marker = tmp_path / "ran"
    cached.write_bytes(pickle.dumps(Marker(marker)))
    with pytest.raises(IntegrityError, match="cached copy .* differs from the store"):
        ws.registry.load("iris/1")
    assert not marker.exists()
    (cached.parent / "extra.py").write_text("print('hi')\n")
    cached.unlink()
    with pytest.raises(IntegrityError):
        ws.registry.load("iris/1")


def test_a_swapped_blob_in_the_artifact_store_is_refused(ws: Any, tmp_path: Path) -> None:
    version = ws.registry.get("iris/1")
    store_root = Path(ws.config.root) / ".modelyard" / "artifacts" / "sha256"
    manifest = ws.registry.artifacts.get(version.artifact)
    digest = json.loads(manifest)["files"]["model.cloudpickle"]["digest"].split(":")[1]
    blob = store_root / digest[:2] / digest
    marker = tmp_path / "ran"
    blob.chmod(0o644)
    blob.write_bytes(pickle.dumps(Marker(marker)))
    with pytest.raises(IntegrityError):
        ws.registry.load("iris/1")
    assert not marker.exists()


def test_another_workspace_key_does_not_verify_and_a_shared_key_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = "k" * 40
    env = {"MODELYARD_SECURITY_SIGNING_KEY": "env:SIGNING", "SIGNING": shared}
    with modelyard.Workspace.init(tmp_path / "a", environ=env) as a:
        with a.start_run("train") as run:
            logged = a.registry.log_model(run, doubler(), input_example=EXAMPLE)
        a.registry.register("iris", logged)
        meta_url = f"sqlite:///{Path(a.config.root) / '.modelyard' / 'meta.db'}"
        artifacts = str(Path(a.config.root) / ".modelyard" / "artifacts")
    settings = {"metadata_url": meta_url, "artifacts_url": artifacts}
    # A second host on the same registry with the same key loads it...
    with modelyard.Workspace.init(tmp_path / "b", environ=env, **settings) as b:
        assert list(b.registry.load("iris/1").predictor.predict(EXAMPLE)["a"]) == [2.0, 4.0]
    # ... one with its own key file refuses it.
    with modelyard.Workspace.init(tmp_path / "c", environ={}, **settings) as c:
        with pytest.raises(IntegrityError, match="another signing key"):
            c.registry.load("iris/1")
    with pytest.raises(ConfigError, match="at least 32"):
        bad = modelyard.Workspace.init(
            tmp_path / "d", environ={"MODELYARD_SECURITY_SIGNING_KEY": "short"}
        )
        bad.secret_key("signing")


def test_the_signing_key_file_is_private_to_its_owner(ws: Any) -> None:
    ws.registry.load("iris/1")
    key = Path(ws.config.root) / ".modelyard" / "secrets" / "signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    everything = b"".join(
        p.read_bytes() for p in Path(ws.config.root).rglob("*.db*") if p.is_file()
    )
    assert key.read_bytes().strip() not in everything


def test_require_safe_formats_refuses_pickles_and_loads_native_formats(ws: Any) -> None:
    strict = ws.registry.refusing_pickles()
    with pytest.raises(ConfigError, match="loads a pickle"):
        strict.load("iris/1")
    x = pd.DataFrame({"a": np.linspace(0, 1, 40), "b": np.linspace(1, 0, 40)})
    y = (x["a"] > 0.5).astype(int)
    with ws.start_run("onnx") as run:
        exact = ws.registry.log_model(
            run, LogisticRegression().fit(x, y), input_example=x.head(5), onnx=True
        )
    ws.registry.register("onnx_model", exact)
    assert strict.load("onnx_model/1").predictor.predict(x.head(3)) is not None


def test_a_version_from_before_seals_is_sealed_on_request(
    ws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit_version(ws, seal=None)
    root = str(ws.config.root)
    code, out, err = run_cli(capsys, "models", "seal", "iris/1", "-w", root)
    assert code == 0, err
    assert list(ws.registry.load("iris/1").predictor.predict(EXAMPLE)["a"]) == [2.0, 4.0]
    code, out, err = run_cli(capsys, "models", "seal", "iris/1", "-w", root)
    assert code == 2 and "sealed already" in err
    code, out, err = run_cli(capsys, "audit", "--action", "model.seal", "--json", "-w", root)
    assert '"model.seal"' in out


def test_sealing_checks_the_stored_files_not_a_good_cache_copy(
    ws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws.registry.load("iris/1")  # a good copy in the local cache
    _edit_version(ws, seal=None)
    version = ws.registry.get("iris/1")
    manifest = json.loads(ws.registry.artifacts.get(version.artifact))
    digest = manifest["files"]["model.cloudpickle"]["digest"].split(":")[1]
    blob = Path(ws.config.root) / ".modelyard" / "artifacts" / "sha256" / digest[:2] / digest
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"x")  # the stored file is damaged
    code, out, err = run_cli(capsys, "models", "seal", "iris/1", "-w", str(ws.config.root))
    assert code == 2 and "does not match" in err, out + err
    assert ws.registry.get("iris/1").seal is None
