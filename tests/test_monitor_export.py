"""``modelyard monitor export``: a Grafana dashboard and Prometheus rules that match /metrics."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import modelyard
from cli_support import run_cli
from modelyard.monitoring._export import PANELS, export, rules
from modelyard.monitoring._series import record_metrics
from modelyard.serving import create_app
from modelyard.serving._metrics import ServerMetrics
from registry_support import EXAMPLE, double, log_model


def served_metric_names() -> set[str]:
    """Every sample name the server can export (counters as *_total, histograms' series)."""
    names: set[str] = set()
    for family in ServerMetrics().registry.collect():
        kind = family.type
        names.add(family.name)
        if kind == "counter":
            names.add(family.name + "_total")
        if kind == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


async def monitoring_sample_names(ws: modelyard.Workspace) -> set[str]:
    """Sample names on a live /metrics once every kind of monitoring result is recorded."""
    ws.registry.register("churn", log_model(ws, double, EXAMPLE))
    ws.registry.set_alias("churn", "production", 1)
    values = {
        "drift.share": 0.5,
        "drift.drifted": 1.0,
        "drift.rows": 100.0,
        "drift.detected.a": 1.0,
        "drift.psi.a": 0.4,
        "slo.latency_p99_ms": 10.0,
    }
    record_metrics(ws.metadata, "churn", values, window=timedelta(hours=1), version=1)
    quality = {"quality.roc_auc": 0.9, "quality.rows": 50.0}
    hour = timedelta(hours=1)
    record_metrics(ws.metadata, "churn", quality, window=hour, version=1, variant="production")
    app = create_app(
        ws.registry, ["churn@production"], poll_interval_s=0, prediction_log=ws.predictions
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            text = (await client.get("/metrics")).text
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.anyio
async def test_every_expression_names_metrics_a_live_server_exports(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    exprs = [expr for _, expr, _ in PANELS] + [r["expr"] for r in rules()]
    used = {m for expr in exprs for m in re.findall(r"\bmodelyard_[a-z_]+", expr)}
    exported = served_metric_names() | await monitoring_sample_names(sqlite_workspace)
    assert used and used <= exported, used - exported
    monitoring = {"modelyard_drift_share", "modelyard_drift_score", "modelyard_quality"}
    assert monitoring <= used


def test_monitoring_rules_take_their_thresholds(tmp_path: Path) -> None:
    export(tmp_path, drift_share=0.3, quality_drop=0.02, stale_hours=6)

    doc = yaml.safe_load((tmp_path / "prometheus-rules.yml").read_text())
    by_name = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert by_name["ModelyardDataDrift"]["expr"].endswith("> 0.3")
    assert by_name["ModelyardQualityDrop"]["expr"].endswith("[7d])) - 0.02")
    assert by_name["ModelyardMonitoringStale"]["expr"].endswith("> 21600")
    assert "30%" in by_name["ModelyardDataDrift"]["annotations"]["summary"]


def test_the_command_writes_a_dashboard_and_a_rule_file_prometheus_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys,
        *("monitor", "export", "-o", str(tmp_path), "--p99-ms", "250", "--error-rate", "0.02"),
        *("--drift-share", "0.3", "--stale-hours", "6"),
    )

    board = json.loads((tmp_path / "grafana-dashboard.json").read_text())
    doc = yaml.safe_load((tmp_path / "prometheus-rules.yml").read_text())
    assert code == 0, err
    assert len(board["panels"]) == len(PANELS) and all(p["targets"] for p in board["panels"])
    [group] = doc["groups"]
    by_name = {r["alert"]: r for r in group["rules"]}
    assert by_name["ModelyardSlowP99"]["expr"].endswith("> 0.25")
    assert by_name["ModelyardHighErrorRate"]["expr"].endswith("> 0.02")
    assert by_name["ModelyardDataDrift"]["expr"].endswith("> 0.3")
    assert by_name["ModelyardMonitoringStale"]["expr"].endswith("> 21600")
    assert "{{ $labels.model }}" in by_name["ModelyardHighErrorRate"]["annotations"]["summary"]
    assert "wrote" in out
