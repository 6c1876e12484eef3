"""No credential reaches a user's screen or log: config show, reprs, errors, log lines.

The workspace below has a PostgreSQL metadata URL with a password and an S3 artifact
store with credentials in its URL and endpoint; both servers are unreachable (a closed
port), which is when error messages quote the URLs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

import modelyard
from cli_support import run_cli
from modelyard.errors import BackendUnavailableError
from modelyard.serving._logging import JsonFormatter

SECRET = "s3cret-Pa55"


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    port = closed_port()
    env = {
        "MODELYARD_METADATA_URL": f"postgresql://bob:{SECRET}@127.0.0.1:{port}/meta",
        "MODELYARD_ARTIFACTS_URL": f"s3://AKIAEXAMPLE:{SECRET}@models/prod",
        "MODELYARD_ARTIFACTS_ENDPOINT_URL": f"http://127.0.0.1:{port}/?token={SECRET}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # one try at the closed port, not five
    (tmp_path / "ws").mkdir()
    return env


def test_config_show_hides_every_password_and_token(
    secret_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "config", "show", "-w", str(tmp_path / "ws"))
    assert code == 0, err
    assert SECRET not in out + err
    assert "postgresql://bob:***@127.0.0.1" in out
    assert "s3://AKIAEXAMPLE:***@models/prod" in out
    assert "token=***" in out


def test_reprs_hide_the_credentials(secret_env: dict[str, str], tmp_path: Path) -> None:
    ws = modelyard.Workspace(tmp_path / "ws")
    shown = [repr(ws), repr(ws.config), repr(ws.artifacts), ws.config.describe("metadata.url")]
    from modelyard.backends.metadata import open_metadata

    shown.append(repr(open_metadata(secret_env["MODELYARD_METADATA_URL"])))
    assert all(SECRET not in s for s in shown), shown
    assert "bob:***@" in shown[1] and "AKIAEXAMPLE:***@" in shown[2]


def test_unreachable_servers_fail_in_one_line_without_the_credentials(
    secret_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = modelyard.Workspace(tmp_path / "ws")
    with pytest.raises(BackendUnavailableError) as metadata:
        ws.metadata  # noqa: B018 - connects
    with pytest.raises(BackendUnavailableError) as artifacts:
        ws.artifacts.put(b"model bytes")
    for exc in (metadata.value, artifacts.value):
        assert SECRET not in str(exc) and "\n" not in str(exc)
        assert "127.0.0.1" in str(exc) or "models/prod" in str(exc)
    assert "the artifact store at s3://AKIAEXAMPLE:***@models/prod failed" in str(artifacts.value)

    code, out, err = run_cli(capsys, "runs", "list", "-w", str(tmp_path / "ws"))
    assert code == 2
    assert "cannot open the metadata database postgresql://bob:***@127.0.0.1" in err
    assert SECRET not in out + err and "Traceback" not in err


def test_s3_credentials_in_the_url_are_used_and_never_shown(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.backends.artifacts import open_artifacts

    # Only the URL carries credentials: without them S3 refuses to sign the request.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    url = s3_bucket.replace("s3://", f"s3://testing:{SECRET}@")
    store = open_artifacts(url, client_kwargs={"endpoint_url": s3_endpoint})
    digest = store.put(b"weights")
    assert store.get(digest) == b"weights"
    assert SECRET not in repr(store)


def test_server_log_lines_hide_urls_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("modelyard.test_secrets")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        try:
            raise ConnectionError(f"cannot reach redis://:{SECRET}@cache:6379/0")
        except ConnectionError:
            logger.exception("alias refresh failed for postgresql://bob:%s@db/meta", SECRET)
    finally:
        logger.removeHandler(handler)
    line = capsys.readouterr().err
    assert SECRET not in line
    assert "postgresql://bob:***@db/meta" in line and "redis://:***@cache" in line


def test_alert_sink_reprs_hide_the_webhook_path_and_headers(tmp_path: Path) -> None:
    from modelyard.monitoring._sinks import build_sink

    sink = build_sink(
        "pager",
        {
            "type": "webhook",
            "url": f"https://hooks.slack.com/services/T0/B0/{SECRET}",
            "headers": {"Authorization": f"Bearer {SECRET}", "X-Team": "ml"},
        },
        tmp_path,
    )
    assert SECRET not in repr(sink)
    assert "hooks.slack.com" in repr(sink) and "'X-Team': 'ml'" in repr(sink)


def test_features_show_hides_a_postgres_source_password(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ratings (driver_id bigint, event_timestamp timestamptz, rating float8)"
        )
        conn.execute("INSERT INTO ratings VALUES (1, '2024-03-01T10:00Z', 4.0)")
    # The test server trusts local connections, so any password is accepted.
    with_password = dsn.replace("postgres@", f"postgres:{SECRET}@", 1)
    root = tmp_path / "ws"
    assert run_cli(capsys, "init", str(root))[0] == 0
    (root / "features.py").write_text(
        "from modelyard.features import Entity, FeatureView, PostgresSource\n"
        "driver = Entity('driver', {'driver_id': 'int64'})\n"
        f"ratings = FeatureView('ratings', entity=driver, source=PostgresSource({with_password!r},"
        " table='ratings'), features={'rating': 'float64'})\n"
    )
    code, out, err = run_cli(capsys, "features", "apply", "-w", str(root))
    assert code == 0, err
    code, out, err = run_cli(capsys, "features", "show", "ratings", "-w", str(root))
    assert code == 0, err
    assert SECRET not in out and "postgres:***@" in out
