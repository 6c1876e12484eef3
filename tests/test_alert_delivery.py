"""A webhook that fails is retried with backoff, and a notice no retry got through (firing
or resolved) is kept as undelivered and sent again by the next check, never counted as
delivered."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

import modelyard
from cli_support import run_cli
from modelyard.monitoring import Alert, WebhookSink
from monitor_support import train_diabetes


class _Flaky(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        server: Any = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        server.received += 1
        failing = server.fail_next > 0
        server.fail_next -= 1
        self.send_response(server.fail_status if failing else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[Any]:
    """A real HTTP server that answers ``fail_status`` to its next ``fail_next`` POSTs."""
    server: Any = HTTPServer(("127.0.0.1", 0), _Flaky)
    server.received, server.fail_next, server.fail_status = 0, 0, 503
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


ALERT = Alert(
    rule="r",
    state="firing",
    severity="critical",
    subject="m@production",
    metric="drift.share",
    value=0.5,
    condition="> 0.3",
    window="1h",
    since=datetime(2026, 1, 1, tzinfo=UTC),
    at=datetime(2026, 1, 1, tzinfo=UTC),
)


def test_a_webhook_that_fails_once_is_retried_and_delivers(hook: Any) -> None:
    hook.fail_next = 1

    WebhookSink(url=hook.url).send(ALERT)

    assert hook.received == 2


def test_a_webhook_that_keeps_failing_gives_up_after_three_tries_within_the_deadline(
    hook: Any,
) -> None:
    hook.fail_next = 100
    started = time.monotonic()

    with pytest.raises(RuntimeError, match=r"answered 503 \(3 tries in 10 s\)"):
        WebhookSink(url=hook.url).send(ALERT)

    assert hook.received == 3 and time.monotonic() - started < 10


def test_a_client_error_is_not_retried(hook: Any) -> None:
    hook.fail_next, hook.fail_status = 100, 404

    with pytest.raises(RuntimeError, match="answered 404$"):
        WebhookSink(url=hook.url).send(ALERT)

    assert hook.received == 1


def test_a_refused_connection_is_retried_then_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed

    with pytest.raises(RuntimeError, match=r"cannot reach http://127.0.0.1:\d+/….*3 tries"):
        WebhookSink(url=f"http://127.0.0.1:{port}/x", backoff_s=0.01).send(ALERT)


RULE = """
[[alerts.rules]]
name = "drift"
model = "diabetes@production"
metric = "drift.share"
condition = "> 0.3"
on_no_data = "firing"
severity = "critical"
sinks = ["audit", "oncall"]

[alerts.sinks.audit]
type = "file"
path = "alerts.jsonl"

[alerts.sinks.oncall]
type = "webhook"
url = "{url}"
"""


def check(capsys: pytest.CaptureFixture[str], ws: modelyard.Workspace) -> dict[str, Any]:
    code, out, err = run_cli(capsys, "monitor", "check", "--json", "-w", str(ws.root))
    assert code == 0, err
    (rule,) = json.loads(out)["rules"]
    return dict(rule)


def test_an_undelivered_notice_is_sent_again_by_the_next_check(
    sqlite_workspace: modelyard.Workspace, hook: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    train_diabetes(ws)
    path = ws.root / "modelyard.toml"
    path.write_text(path.read_text() + RULE.replace("{url}", hook.url))
    hook.fail_next = 100  # on-call's webhook is down

    first = check(capsys, ws)

    assert first["notified"] == "firing" and first["state"] == "undelivered"
    assert first["deliveries"]["audit"] == "sent"
    assert first["deliveries"]["oncall"].startswith("failed: http://127.0.0.1:")
    assert "answered 503 (3 tries" in first["deliveries"]["oncall"]
    assert hook.received == 3
    code, out, _ = run_cli(capsys, "monitor", "alerts", "--json", "-w", str(ws.root))
    shown = json.loads(out)
    assert shown["rules"][0]["state"] == "undelivered"
    assert shown["history"][0]["deliveries"]["oncall"].startswith("failed:")
    code, out, _ = run_cli(capsys, "monitor", "alerts", "-w", str(ws.root))
    assert "notice undelivered" in out and "answered 503" in out

    hook.fail_next = 0  # back up: the next check sends it, to on-call only
    second = check(capsys, ws)

    assert second["notified"] == "firing" and second["state"] == "firing"
    assert second["deliveries"] == {"oncall": "sent"}
    assert hook.received == 4
    assert len((ws.root / "alerts.jsonl").read_text().splitlines()) == 1  # not sent twice

    third = check(capsys, ws)  # delivered now: quiet while it keeps firing
    assert third["notified"] is None and third["state"] == "firing" and hook.received == 4


def test_an_undelivered_resolved_notice_is_sent_again_by_the_next_check(
    sqlite_workspace: modelyard.Workspace, hook: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    train_diabetes(ws)
    path = ws.root / "modelyard.toml"
    path.write_text(path.read_text() + RULE.replace("{url}", hook.url))
    fired = check(capsys, ws)
    assert fired["notified"] == "firing" and fired["state"] == "firing"
    assert hook.received == 1

    # The condition stops holding while on-call's webhook is down.
    path.write_text(path.read_text().replace('on_no_data = "firing"', 'on_no_data = "ok"'))
    hook.fail_next = 100
    resolved = check(capsys, ws)

    assert resolved["notified"] == "resolved" and resolved["state"] == "ok_undelivered"
    assert resolved["deliveries"]["audit"] == "sent"
    assert "answered 503 (3 tries" in resolved["deliveries"]["oncall"]
    code, out, _ = run_cli(capsys, "monitor", "alerts", "-w", str(ws.root))
    assert code == 0 and "resolved notice undelivered" in out

    hook.fail_next = 0  # back up: the next check sends it, to on-call only
    again = check(capsys, ws)

    assert again["notified"] == "resolved" and again["state"] == "ok"
    assert again["deliveries"] == {"oncall": "sent"}
    assert hook.received == 1 + 3 + 1
    audit = [json.loads(line) for line in (ws.root / "alerts.jsonl").read_text().splitlines()]
    assert [a["state"] for a in audit] == ["firing", "resolved"]  # not sent twice

    quiet = check(capsys, ws)  # delivered now: nothing more to say
    assert quiet["notified"] is None and quiet["state"] == "ok" and hook.received == 5
