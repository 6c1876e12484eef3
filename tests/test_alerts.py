"""Alert rules in modelyard.toml, ``monitor check`` and its sinks, ``monitor alerts``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

import modelyard
from cli_support import run_cli
from modelyard.errors import ConfigError
from modelyard.monitoring import SampleSize
from modelyard.monitoring._check import Checker, alert_history
from monitor_support import exchange, train_diabetes


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(  # type: ignore[attr-defined]
            {"path": self.path, "body": json.loads(body), "type": self.headers["Content-Type"]}
        )
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[HTTPServer]:
    """A real HTTP server on a free port that keeps every POST it receives."""
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: HTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/SECRET"


@pytest.fixture
def diabetes(workspace: modelyard.Workspace) -> tuple[modelyard.Workspace, pd.DataFrame]:
    """A Ridge on the diabetes data in production, its training rows as the reference."""
    return workspace, train_diabetes(workspace)


@pytest.fixture
def configure() -> Iterator[Callable[[modelyard.Workspace, str], modelyard.Workspace]]:
    """Write modelyard.toml with the workspace's metadata URL and some ``[alerts]``; reopen."""
    opened: list[modelyard.Workspace] = []

    def write(ws: modelyard.Workspace, alerts: str) -> modelyard.Workspace:
        url = ws.config["metadata.url"]
        (ws.root / "modelyard.toml").write_text(f'[metadata]\nurl = "{url}"\n\n{alerts}')
        opened.append(modelyard.Workspace(ws.root))
        return opened[-1]

    yield write
    for ws in opened:
        ws.close()


def serve(ws: modelyard.Workspace, rows: pd.DataFrame) -> None:
    records = rows.to_dict(orient="records")
    calls = [("/v1/models/diabetes/predict", records[i : i + 50]) for i in range(0, len(rows), 50)]
    assert all(r.status_code == 200 for r in exchange(ws, "diabetes", calls))


def shifted(x: pd.DataFrame) -> pd.DataFrame:
    """The training rows with 'bmi' moved by two standard deviations; other columns kept."""
    out = x.sample(400, random_state=1).reset_index(drop=True)
    out["bmi"] = out["bmi"] + 2 * x["bmi"].std()
    return out


DRIFT_RULES = """
[[alerts.rules]]
name = "diabetes-drift"
model = "diabetes@production"
metric = "drift.share"
condition = "> 0.05"
window = "1d"
severity = "critical"
sinks = ["log", "audit", "chat"]
description = "inputs no longer look like the training data"

[alerts.sinks.audit]
type = "file"
path = "alerts.jsonl"

[alerts.sinks.chat]
type = "webhook"
url = "{url}"
format = "slack"
"""


def test_a_drift_rule_fires_once_while_firing_and_sends_a_resolved_notice(
    configure: Any, diabetes: Any, webhook: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = diabetes
    ws = configure(ws, DRIFT_RULES.replace("{url}", _url(webhook)))
    serve(ws, shifted(x))

    code, out, err = run_cli(capsys, "monitor", "check", "--json", "-w", str(ws.root))
    assert code == 0, err
    (result,) = json.loads(out)["rules"]
    assert result["state"] == "firing" and result["notified"] == "firing"
    assert result["value"] == pytest.approx(0.1)  # bmi: one of the ten columns
    assert result["deliveries"] == {"log": "sent", "audit": "sent", "chat": "sent"}
    logged = json.loads(err.strip().splitlines()[-1])
    assert logged["event"] == "alert" and logged["rule"] == "diabetes-drift"

    (posted,) = webhook.received  # type: ignore[attr-defined]
    assert posted["path"] == "/hooks/T000/SECRET" and posted["type"] == "application/json"
    slack = posted["body"]
    assert "diabetes-drift FIRING" in slack["text"] and "critical" in slack["text"]
    assert slack["blocks"][0]["type"] == "section"
    assert "training data" in slack["blocks"][-1]["elements"][0]["text"]

    # Checked again while still drifted: no second notification anywhere.
    code, out, _ = run_cli(capsys, "monitor", "check", "--json", "-w", str(ws.root))
    assert code == 0 and json.loads(out)["rules"][0]["notified"] is None
    assert len(webhook.received) == 1  # type: ignore[attr-defined]
    assert len((ws.root / "alerts.jsonl").read_text().splitlines()) == 1

    # A day later the drifted traffic has left the window: resolved, once.
    later = Checker(ws.metadata, ws.registry, ws.predictions, ws.features)
    later.now = datetime.now(UTC) + timedelta(days=2)
    (resolved,) = later.run(ws.alerting)
    assert resolved.value is None and resolved.state == "ok" and resolved.notified == "resolved"
    assert "resolved" in webhook.received[-1]["body"]["text"]  # type: ignore[attr-defined]
    lines = [json.loads(s) for s in (ws.root / "alerts.jsonl").read_text().splitlines()]
    assert [line["state"] for line in lines] == ["firing", "resolved"]

    code, out, _ = run_cli(capsys, "monitor", "alerts", "--json", "-w", str(ws.root))
    listed = json.loads(out)
    assert [e["state"] for e in listed["history"]] == ["resolved", "firing"]
    assert listed["rules"] == [
        {
            "rule": "diabetes-drift",
            "state": "ok",
            "since": listed["rules"][0]["since"],
            "value": None,
        }
    ]


def test_a_rule_holds_for_its_duration_before_it_fires(configure: Any, diabetes: Any) -> None:
    ws, x = diabetes
    ws = configure(
        ws,
        """
[[alerts.rules]]
name = "bmi-psi"
model = "diabetes@production"
metric = "drift.psi.bmi"
condition = ">= 0.2"
window = "1d"
for = "10m"
sinks = ["audit"]

[alerts.sinks.audit]
type = "file"
path = "out/alerts.jsonl"
""",
    )
    serve(ws, shifted(x))
    start = datetime.now(UTC)
    checker = Checker(ws.metadata, ws.registry, ws.predictions, ws.features, start)
    (first,) = checker.run(ws.alerting)
    assert first.value is not None and first.value > 0.2
    assert first.state == "pending" and first.notified is None
    assert not (ws.root / "out" / "alerts.jsonl").exists()

    five = Checker(ws.metadata, ws.registry, ws.predictions, ws.features)
    five.now = start + timedelta(minutes=5)
    assert five.run(ws.alerting)[0].state == "pending"

    eleven = Checker(ws.metadata, ws.registry, ws.predictions, ws.features)
    eleven.now = start + timedelta(minutes=11)
    (fired,) = eleven.run(ws.alerting)
    assert fired.state == "firing" and fired.notified == "firing"
    (line,) = (ws.root / "out" / "alerts.jsonl").read_text().splitlines()
    assert json.loads(line)["since"] == start.isoformat()


def test_columns_without_drift_do_not_fire(configure: Any, diabetes: Any) -> None:
    ws, x = diabetes
    ws = configure(
        ws,
        """
[[alerts.rules]]
name = "age-psi"
model = "diabetes@production"
metric = "drift.psi.age"
condition = ">= 0.2"
window = "1d"

[[alerts.rules]]
name = "no-such-column"
model = "diabetes@production"
metric = "drift.psi.height"
condition = ">= 0.2"
window = "1d"

[[alerts.rules]]
name = "bad-override"
model = "diabetes@production"
metric = "drift.share"
condition = "> 0"
window = "1d"
thresholds = { height = { psi = 0.1 } }
""",
    )
    serve(ws, shifted(x))
    checker = Checker(ws.metadata, ws.registry, ws.predictions, ws.features)
    age, height, override = checker.run(ws.alerting)
    assert override.error is not None and "height" in override.error
    assert age.state == "ok" and age.value is not None and age.value < 0.2 and age.error is None
    # A rule that cannot be evaluated says why and leaves the others working.
    assert height.error is not None and "no input column 'height'" in height.error


def test_a_failing_webhook_is_recorded_and_the_other_sinks_still_deliver(
    configure: Any, diabetes: Any, webhook: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = diabetes
    webhook.status = 400  # type: ignore[attr-defined]
    ws = configure(ws, DRIFT_RULES.replace("{url}", _url(webhook)))
    serve(ws, shifted(x))
    code, out, _ = run_cli(capsys, "monitor", "check", "-w", str(ws.root))
    assert code == 0
    assert "chat failed" in out and "SECRET" not in out  # the secret path is not shown
    assert (ws.root / "alerts.jsonl").exists()
    (event,) = alert_history(ws.metadata)
    assert event["deliveries"]["audit"] == "sent"
    assert event["deliveries"]["chat"].startswith("failed: http://127.0.0.1:")
    assert "400" in event["deliveries"]["chat"]


def test_slo_rules_read_errors_latency_and_volume_from_the_log(
    configure: Any, diabetes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = diabetes
    ws = configure(
        ws,
        """
[[alerts.rules]]
name = "bad-input"
model = "diabetes"
metric = "slo.client_error_rate"
condition = "> 0.2"

[[alerts.rules]]
name = "too-quiet"
model = "diabetes@production"
metric = "slo.volume"
condition = "< 1000"
severity = "info"

[[alerts.rules]]
name = "slow"
model = "diabetes@production"
metric = "slo.latency_p99_ms"
condition = "> 60000"
""",
    )
    rows = x.head(30).to_dict(orient="records")
    good = [("/v1/models/diabetes/predict", rows[i : i + 10]) for i in range(0, 30, 10)]
    bad = [("/v1/models/diabetes/predict", {"age": "old"})] * 2
    statuses = [r.status_code for r in exchange(ws, "diabetes", good + bad)]
    assert statuses == [200, 200, 200, 422, 422]

    code, out, _ = run_cli(
        capsys, "monitor", "slo", "diabetes@production", "--json", "-w", str(ws.root)
    )
    slo = json.loads(out)
    assert code == 0
    assert slo["requests"] == 5 and slo["volume"] == 30
    assert slo["client_error_rate"] == pytest.approx(0.4) and slo["error_rate"] == 0
    assert 0 < slo["latency_p50_ms"] <= slo["latency_p99_ms"] < 60000

    checker = Checker(ws.metadata, ws.registry, ws.predictions, ws.features)
    by_name = {r.rule.name: r for r in checker.run(ws.alerting)}
    assert by_name["bad-input"].state == "firing"
    assert by_name["too-quiet"].state == "firing" and by_name["too-quiet"].value == 30
    assert by_name["slow"].state == "ok"


def test_a_quality_rule_reads_the_delayed_labels(configure: Any, diabetes: Any) -> None:
    ws, x = diabetes
    ws = configure(
        ws,
        """
[[alerts.rules]]
name = "error-too-large"
model = "diabetes@production"
metric = "quality.mae"
condition = "> 30"
window = "1d"

[[alerts.rules]]
name = "too-few-labels"
model = "diabetes"
metric = "quality.rows"
condition = "< 10"
window = "1d"
""",
    )
    _, y = load_diabetes(return_X_y=True, as_frame=True)
    rows = x.head(40)
    answers = exchange(ws, "diabetes", [("/v1/models/diabetes/predict", rows.to_dict("records"))])
    rid = answers[0].json()["request_id"]
    predicted = [p["prediction"] for p in answers[0].json()["predictions"]]
    labels = [{"request_id": rid, "row": i, "label": float(y[i])} for i in range(40)]
    assert exchange(ws, "diabetes", [("/v1/feedback", labels)])[0].status_code == 200

    # 40 labels are enough here: the rule under test is how labels reach the rule.
    checker = Checker(
        ws.metadata, ws.registry, ws.predictions, ws.features, sample=SampleSize(min_labels=40)
    )
    mae, count = checker.run(ws.alerting)
    expected = float(np.mean(np.abs(np.array(predicted) - y[:40].to_numpy())))
    assert mae.value == pytest.approx(expected) and mae.state == "firing"
    assert count.value == 40 and count.state == "ok"


def test_checks_are_kept_as_time_series(
    configure: Any, diabetes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, x = diabetes
    ws = configure(ws, "")
    serve(ws, shifted(x))
    for _ in range(2):
        code, _, err = run_cli(
            capsys, "monitor", "drift", "diabetes@production", "-w", str(ws.root)
        )
        assert code == 0, err
    code, out, _ = run_cli(
        capsys,
        "monitor",
        "history",
        "diabetes",
        "--metric",
        "drift.psi.*",
        "--json",
        "-w",
        str(ws.root),
    )
    rows = json.loads(out)
    assert code == 0
    bmi = [r for r in rows if r["metric"] == "drift.psi.bmi"]
    assert (
        len(bmi) == 2
        and bmi[0]["value"] == pytest.approx(bmi[1]["value"])
        and bmi[0]["value"] > 0.2
    )
    assert {r["version"] for r in rows} == {1} and {r["window_s"] for r in rows} == {86400}


def test_two_checks_at_once_notify_once(configure: Any, diabetes: Any) -> None:
    ws, x = diabetes
    ws = configure(
        ws,
        """
[[alerts.rules]]
name = "drift"
model = "diabetes@production"
metric = "drift.share"
condition = "> 0"
window = "1d"
sinks = ["audit"]

[alerts.sinks.audit]
type = "file"
path = "alerts.jsonl"
""",
    )
    serve(ws, shifted(x))
    results: list[Any] = []

    def check() -> None:
        other = modelyard.Workspace(ws.root)
        try:
            checker = Checker(other.metadata, other.registry, other.predictions)
            results.extend(checker.run(other.alerting))
        finally:
            other.close()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.state for r in results] == ["firing"] * 4
    assert sum(r.notified == "firing" for r in results) == 1
    assert len((ws.root / "alerts.jsonl").read_text().splitlines()) == 1


# -- bad configuration: named at load, before anything runs ----------------------------------
def rule(**fields: str) -> str:
    """One [[alerts.rules]] table: a valid rule with ``fields`` changed ("" removes one)."""
    base = {"name": "r", "model": "m@production", "metric": "slo.volume", "condition": "< 1"}
    lines = [f'{k} = "{v}"' for k, v in {**base, **fields}.items() if v]
    return "[[alerts.rules]]\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            rule(metric="drift.shares"),
            "alert rule 'r': metric: unknown metric 'drift.shares'; use one of: drift.share",
        ),
        (rule(condition="above 1"), "alert rule 'r': condition: 'above 1' is not a condition"),
        (
            rule().replace("\n", '\nsinks = ["pager"]\n', 1),
            "sends to sink 'pager', which is not declared; add [alerts.sinks.pager]",
        ),
        (rule(model=""), 'slo.volume needs model = "NAME@ALIAS"'),
        (rule(model="m", metric="drift.share"), 'write model = "m@production"'),
        (rule(window="1 day"), "window: '1 day' is not a duration"),
        (rule(severe="high"), "alert rule 'r': severe: Extra inputs are not permitted"),
        (
            '[alerts.sinks.x]\ntype = "pagerduty"\n',
            "alert sink 'x' has type 'pagerduty'; use one of: file, log, webhook",
        ),
        (
            '[alerts.sinks.x]\ntype = "webhook"\nurl = "ftp://x"\n',
            "alert sink 'x': url: String should match pattern",
        ),
        ("[alert]\nrules = []\n", "unknown section [alert]; did you mean 'alerts'?"),
    ],
)
def test_a_bad_rule_is_a_one_line_error_when_the_config_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: str, message: str
) -> None:
    (tmp_path / "modelyard.toml").write_text(rules)
    code, out, err = run_cli(capsys, "config", "show", "-w", str(tmp_path))
    assert code == 2 and "Traceback" not in err
    assert message in err.replace("\n", " "), err
    with pytest.raises(ConfigError):
        modelyard.Workspace(tmp_path).config  # noqa: B018


def test_without_rules_check_says_how_to_add_them(
    sqlite_workspace: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "monitor", "check", "-w", str(sqlite_workspace.root))
    assert code == 0 and "no alert rules in modelyard.toml" in out


def test_an_unknown_rule_name_is_named(
    configure: Any, diabetes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _ = diabetes
    ws = configure(ws, DRIFT_RULES.replace("{url}", "http://127.0.0.1:9/x"))
    code, _, err = run_cli(capsys, "monitor", "alerts", "--rule", "nope", "-w", str(ws.root))
    assert code == 2 and "no alert rule named 'nope'; rules: diabetes-drift" in err


def test_feature_freshness_is_the_age_of_the_stalest_view(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    from modelyard.features import Entity, FeatureService, FeatureView, FrameSource
    from modelyard.monitoring._slo import feature_freshness

    ws = sqlite_workspace
    now = datetime(2026, 3, 1, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "driver_id": np.arange(5, dtype="int64"),
            "event_timestamp": pd.date_range(
                now - timedelta(days=1), periods=5, freq="h", tz="UTC"
            ),
            "trips": np.arange(5.0),
        }
    )
    driver = Entity("driver", {"driver_id": "int64"})
    views = [
        FeatureView(name, entity=driver, source=FrameSource(frame), features={"trips": "float64"})
        for name in ("trips", "trips_copy")
    ]
    service = FeatureService("both", [*views])
    ws.features.apply([driver, *views, service])
    assert feature_freshness(ws.features, "trips", now) is None  # never materialized
    ws.features.materialize(now - timedelta(days=2), now - timedelta(hours=3), views=["trips"])
    ws.features.materialize(now - timedelta(days=2), now - timedelta(hours=1), views=["trips_copy"])
    assert feature_freshness(ws.features, "trips", now) == 3 * 3600
    assert feature_freshness(ws.features, "both", now) == 3 * 3600  # the stalest of the two


def test_every_builtin_sink_is_registered_tested_and_documented() -> None:
    from modelyard.monitoring import SINK_TYPES, FileSink, LogSink, WebhookSink

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    tests = Path(__file__).read_text()
    assert SINK_TYPES == {"log": LogSink, "file": FileSink, "webhook": WebhookSink}
    for name in SINK_TYPES:
        assert f'type = "{name}"' in readme, f"sink {name!r} is not documented in README.md"
        assert f'"{name}"' in tests.replace(f'type = "{name}"', ""), f"sink {name!r} untested"
