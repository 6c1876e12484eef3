"""``modelyard monitor export``: a Grafana dashboard and Prometheus rules that match /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cli_support import run_cli
from modelyard.monitoring._export import PANELS, rules
from modelyard.serving._metrics import ServerMetrics


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


def test_every_expression_names_metrics_the_server_exports() -> None:
    exprs = [expr for _, expr, _ in PANELS] + [r["expr"] for r in rules()]
    used = {m for expr in exprs for m in re.findall(r"\bmodelyard_[a-z_]+", expr)}
    assert used and used <= served_metric_names(), used - served_metric_names()


def test_the_command_writes_a_dashboard_and_a_rule_file_prometheus_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "monitor", "export", "-o", str(tmp_path), "--p99-ms", "250", "--error-rate", "0.02"
    )

    board = json.loads((tmp_path / "grafana-dashboard.json").read_text())
    doc = yaml.safe_load((tmp_path / "prometheus-rules.yml").read_text())
    assert code == 0, err
    assert len(board["panels"]) == len(PANELS) and all(p["targets"] for p in board["panels"])
    [group] = doc["groups"]
    by_name = {r["alert"]: r for r in group["rules"]}
    assert by_name["ModelyardSlowP99"]["expr"].endswith("> 0.25")
    assert by_name["ModelyardHighErrorRate"]["expr"].endswith("> 0.02")
    assert "{{ $labels.model }}" in by_name["ModelyardHighErrorRate"]["annotations"]["summary"]
    assert "wrote" in out
