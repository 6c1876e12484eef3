"""Keys and the audit log from the command line, and a real server as the README and the
container start it: on any address but loopback it refuses every request without a key
except the health checks, over HTTP and gRPC, unless --insecure-no-auth (warned) says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import modelyard
from cli_support import run_cli
from registry_support import doubler, serving_workspace
from server_support import running_server


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_workspace(tmp_path_factory.mktemp("keys") / "ws", ["iris", "other"])


def _create(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    code, out, err = run_cli(capsys, "keys", "create", "-w", str(root), *args)
    assert code == 0, err
    assert "only time the key is shown" in err
    return out.strip()


def test_keys_create_list_revoke_and_audit_from_the_command_line(
    capsys: pytest.CaptureFixture[str], root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_ACTOR", "ci-job-7")
    plain = _create(capsys, root, "--role", "predictor", "--name", "web", "--models", "iris")
    assert plain.startswith("myd_") and len(plain) > 50
    key_id = plain.split("_")[1]
    code, out, _ = run_cli(capsys, "keys", "list", "-w", str(root), "--json")
    listed = {k["key_id"]: k for k in json.loads(out)}
    assert listed[key_id]["models"] == ["iris"] and listed[key_id]["state"] == "active"
    assert plain not in out and plain.split("_", 2)[2] not in out
    code, out, err = run_cli(capsys, "keys", "revoke", "web", "-w", str(root))
    assert code == 0 and key_id in out
    code, out, err = run_cli(capsys, "keys", "revoke", "web", "-w", str(root))  # again: a no-op
    assert code == 0 and key_id in out
    code, out, _ = run_cli(capsys, "keys", "list", "-w", str(root), "--json")
    assert {k["key_id"]: k for k in json.loads(out)}[key_id]["state"] == "revoked"
    code, out, _ = run_cli(capsys, "models", "alias", "iris", "staging", "1", "-w", str(root))
    assert code == 0, out
    code, out, _ = run_cli(capsys, "audit", "-w", str(root), "--json")
    events = json.loads(out)
    actions = [(e["action"], e["target"], e["actor"]) for e in events[:3]]
    assert actions == [  # the second revoke changed nothing, so it recorded nothing
        ("alias.set", "iris", "ci-job-7"),
        ("key.revoke", key_id, "ci-job-7"),
        ("key.create", key_id, "ci-job-7"),
    ]
    assert events[0]["details"] == {"alias": "staging", "version": 1}
    assert events[0]["source"].startswith("cli@")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["keys", "create", "--role", "root"],
            "role 'root' is not one of admin, predictor, reader",
        ),
        (
            ["keys", "create", "--role", "reader", "--expires", "soon"],
            "--expires 'soon' is not a duration",
        ),
        (["keys", "create", "--role", "reader", "--rate", "0"], "--rate 0.0: expected a positive"),
        (["keys", "create", "--role", "reader", "--name", "a b"], "key name 'a b'"),
        (["keys", "revoke", "nobody"], "no key has id or name 'nobody'"),
        (["keys", "create", "--role", "reader", "--expires", "4000d"], "from 1 second to 3650"),
        (["keys", "create", "--role", "reader", "--expires", "99999d"], "at most 100 years"),
        (["keys", "create", "--role", "reader", "--expires", "9" * 14 + "d"], "is too long"),
        (["audit", "--action", "bogus"], "--action 'bogus': admin actions are"),
    ],
)
def test_bad_key_commands_are_one_line_errors_that_write_nothing(
    capsys: pytest.CaptureFixture[str], root: Path, args: list[str], message: str
) -> None:
    code, out, _ = run_cli(capsys, "keys", "list", "-w", str(root), "--json")
    before = json.loads(out)
    code, out, err = run_cli(capsys, *args, "-w", str(root))
    assert code == 2, out + err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    _, out, _ = run_cli(capsys, "keys", "list", "-w", str(root), "--json")
    assert json.loads(out) == before


def test_two_active_keys_cannot_share_a_name(
    capsys: pytest.CaptureFixture[str], root: Path
) -> None:
    _create(capsys, root, "--role", "reader", "--name", "dup")
    code, _, err = run_cli(
        capsys, "keys", "create", "--role", "reader", "--name", "dup", "-w", str(root)
    )
    assert code == 2 and "already named 'dup'" in err


def _grpc_calls(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    x = grpcclient.InferInput("a", [1], "FP64")
    x.set_data_from_numpy(np.array([1.0]))
    return {
        "ServerLive": lambda: client.is_server_live(headers=headers),
        "ServerReady": lambda: client.is_server_ready(headers=headers),
        "ServerMetadata": lambda: client.get_server_metadata(headers=headers),
        "ModelReady": lambda: client.is_model_ready("iris", headers=headers),
        "ModelMetadata": lambda: client.get_model_metadata("iris", headers=headers),
        "ModelInfer": lambda: client.infer("iris", [x], headers=headers),
    }


GRPC_ALLOWED = {
    "ServerLive": {"anonymous", "admin", "predictor", "other", "reader"},
    "ServerReady": {"anonymous", "admin", "predictor", "other", "reader"},
    "ServerMetadata": {"admin", "reader"},
    "ModelReady": {"admin", "predictor", "reader"},
    "ModelMetadata": {"admin", "predictor", "reader"},
    "ModelInfer": {"admin", "predictor"},
}


@pytest.fixture(scope="module")
def public_server(root: Path) -> Iterator[Any]:
    with running_server(
        root, ["iris@production", "other@production"], "--host", "0.0.0.0", grpc=True
    ) as server:
        yield server


def test_a_server_on_a_public_address_refuses_requests_without_a_key(
    capsys: pytest.CaptureFixture[str], root: Path, public_server: Any
) -> None:
    url = public_server.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    for method, path in [("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/openapi.json")]:
        assert httpx.request(method, f"{url}{path}").status_code == 401, path
    r = httpx.post(f"{url}/v1/models/iris/predict", json={"a": 1.0})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    r = httpx.post(f"{url}/v1/models/iris/rollback", json={})
    assert r.status_code == 401
    key = _create(capsys, root, "--role", "predictor")
    r = httpx.post(
        f"{url}/v1/models/iris/predict", json={"a": 1.0}, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 200 and r.json()["prediction"] == {"a": 2.0}


def test_grpc_checks_every_method_against_the_key_in_its_metadata(
    capsys: pytest.CaptureFixture[str], root: Path, public_server: Any
) -> None:
    keys = {
        "admin": _create(capsys, root, "--role", "admin"),
        "predictor": _create(capsys, root, "--role", "predictor"),
        "other": _create(capsys, root, "--role", "predictor", "--models", "other"),
        "reader": _create(capsys, root, "--role", "reader"),
    }
    wrong = []
    with grpcclient.InferenceServerClient(f"127.0.0.1:{public_server.grpc_port}") as client:
        for identity in ("anonymous", *keys):
            headers = (
                {} if identity == "anonymous" else {"authorization": f"Bearer {keys[identity]}"}
            )
            for method, call in _grpc_calls(client, headers).items():
                try:
                    call()
                    status = "OK"
                except InferenceServerException as exc:
                    status = str(exc.status())
                allowed = identity in GRPC_ALLOWED[method]
                expected = (
                    "StatusCode.UNAUTHENTICATED"
                    if identity == "anonymous"
                    else "StatusCode.PERMISSION_DENIED"
                )
                if (status == "OK") != allowed or (not allowed and status != expected):
                    wrong.append(f"{identity} {method}: {status}")
    assert wrong == []


def test_insecure_no_auth_serves_a_public_address_without_keys_and_says_so(root: Path) -> None:
    with running_server(
        root, ["iris@production"], "--host", "0.0.0.0", "--insecure-no-auth"
    ) as server:
        r = httpx.post(f"{server.url}/v1/models/iris/predict", json={"a": 1.0})
        assert r.status_code == 200
        (line,) = server.wait_for_log({"level": "warning"}, count=1)
    assert "--insecure-no-auth" in line["message"]


def test_require_auth_protects_a_loopback_server_too(root: Path) -> None:
    with running_server(root, ["iris@production"], "--require-auth") as server:
        assert httpx.get(f"{server.url}/v1/models").status_code == 401


def test_require_safe_formats_refuses_to_serve_a_pickled_model(root: Path) -> None:
    import subprocess

    from server_support import CLI, free_port

    command = [*CLI, "serve", "iris@production", "--require-safe-formats", "-w", str(root)]
    done = subprocess.run(
        [*command, "--port", str(free_port())], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "loads a pickle" in done.stderr and "Traceback" not in done.stderr


def test_a_server_keeps_its_version_when_the_alias_moves_to_a_tampered_one(
    root: Path, tmp_path: Path
) -> None:
    from modelyard.backends.metadata import tables as t

    with running_server(root, ["other@production"], "--poll-interval", "0.2") as server:
        with modelyard.Workspace(root) as ws:
            with ws.start_run("evil") as run:
                logged = ws.registry.log_model(
                    run, doubler(), input_example=pd.DataFrame({"a": [1.0]})
                )
            v = ws.registry.register("other", logged)
            mv = t.model_versions
            with ws.metadata.write() as conn:  # someone with write access to the database
                conn.execute(
                    mv.update()
                    .where(mv.c.name == "other", mv.c.version == v.version)
                    .values(seal="hmac-sha256:" + "0" * 64)
                )
            ws.registry.set_alias("other", "production", v.version)
        (line,) = server.wait_for_log({"level": "error"}, count=1)
        assert "seal does not match" in json.dumps(line)
        r = httpx.post(f"{server.url}/v1/models/other/predict", json={"a": 1.0})
        assert r.status_code == 200 and r.json()["version"] != v.version
