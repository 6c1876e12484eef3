"""Shared fixtures: real back ends (SQLite, PostgreSQL, a local S3 server), clean env.

PostgreSQL tests use a fresh schema per test on the server at 127.0.0.1:5432.
When a server is unreachable the test is skipped with the reason, except under
CI=true, where it fails: CI must prove every back end.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelyard
from modelyard.serving._logging import JsonFormatter

PG_HOST = os.environ.get("PGHOST_TEST", "127.0.0.1")
PG_BASE = f"postgresql+psycopg://postgres@{PG_HOST}:5432/test"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unreachable(what: str, reason: str) -> None:
    message = f"{what} unreachable: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: every back end must be tested)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MODELYARD_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("MODELYARD_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _server_log_stays_with_its_test() -> Iterator[None]:
    """The server's log handler (set up by an in-process `modelyard serve`) buffers lines
    for 0.2 s; flushed here, a test's lines go to its own stderr, not the next test's."""
    yield
    for handler in logging.getLogger("modelyard").handlers:
        handler.flush()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new, empty schema (dropped afterwards)."""
    try:
        import psycopg

        conn = psycopg.connect(
            f"host={PG_HOST} port=5432 user=postgres dbname=test", connect_timeout=3
        )
    except Exception as exc:  # any connection failure means "no server"
        _unreachable("PostgreSQL at 127.0.0.1:5432", str(exc).splitlines()[0])
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn.autocommit = True
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every metadata test runs once per back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def workspace(tmp_path: Path, metadata_url: str) -> Iterator[modelyard.Workspace]:
    ws = modelyard.Workspace.init(tmp_path / "ws", metadata_url=metadata_url)
    # As `modelyard init` does: the database exists from the start, so a second Workspace
    # on this folder (given the URL in its modelyard.toml) opens it rather than refusing.
    ws.metadata  # noqa: B018
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path: Path) -> Iterator[modelyard.Workspace]:
    """The embedded defaults only (for tests that are not about the back end)."""
    ws = modelyard.Workspace.init(tmp_path / "ws")
    try:
        yield ws
    finally:
        ws.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto in server mode) on 127.0.0.1."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        _unreachable("moto S3 server", f"moto[server] is not installed ({exc})")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the S3 server; returns ``s3://bucket/prefix``."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}/artifacts"


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[Any]:
    """A local Ray instance of 2 CPUs for the whole session (it takes seconds to start),
    started by the Ray executor; every executor opened meanwhile uses it and leaves it up."""
    try:
        import ray
    except ImportError as exc:
        _unreachable("Ray", f"the 'ray' extra is not installed ({exc}); install modelyard[ray]")
    from modelyard.backends.executors.ray import RayExecutor

    assert not ray.is_initialized(), "something else started Ray; use this fixture instead"
    executor = RayExecutor("ray", num_cpus=2)
    executor.open()
    try:
        yield executor
    finally:
        executor.close()
    # The executor started Ray, so its close stops it (one that found Ray running leaves it).
    assert not ray.is_initialized()


@pytest.fixture
def logged(workspace: modelyard.Workspace) -> Any:
    """A tiny python-flavor model logged under a finished run (registry tests)."""
    from registry_support import EXAMPLE, double, log_model

    return log_model(workspace, double, EXAMPLE)


@pytest.fixture
def redis_url() -> str:
    """The Redis server at 127.0.0.1:6379 (database 15, which the tests may flush)."""
    url = "redis://127.0.0.1:6379/15"
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:  # any failure means "no server"
        _unreachable("Redis at 127.0.0.1:6379", str(exc).splitlines()[0])
    return url


@pytest.fixture(params=["sqlite", "redis"])
def online_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Every online-store test runs once per back end, each in a fresh namespace."""
    from modelyard.backends.online import open_online

    if request.param == "sqlite":
        store = open_online(f"sqlite:///{tmp_path / 'online.db'}")
    else:
        from modelyard.backends.online.redis import RedisOnlineStore

        url = str(request.getfixturevalue("redis_url"))
        store = RedisOnlineStore(url, prefix=f"test:{uuid.uuid4().hex}:")
    store.open()
    try:
        yield store
    finally:
        for view in ("v", "w"):
            store.drop(view)
        store.close()


@pytest.fixture(params=["sqlite", "redis"])
def online_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An online-store URL per back end (Redis is shared: name views uniquely)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def server_log() -> Iterator[list[dict[str, Any]]]:
    """The server's log lines, through the JSON formatter it uses in production."""
    lines: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Collect()
    log = logging.getLogger("modelyard.serving")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


# -- container images (tests/test_build.py, tests/test_sentiment_release.py) ---------------
@pytest.fixture(scope="session")
def wheel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel cache of image builds, kept between runs (see build_support)."""
    from build_support import wheel_cache_folder

    return wheel_cache_folder(request, tmp_path_factory)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman, configured for these machines, with the local base image (built once)."""
    from build_support import configured_podman

    with configured_podman(tmp_path_factory) as path:
        yield path
