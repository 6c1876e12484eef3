"""The SLOs and alerts of one model on its monitoring page.

An SLO is an alert rule of modelyard.toml on an ``slo.*`` metric (latency, error rates,
volume, feature freshness): the rule's condition says when it is missed, so the target
is its opposite. The current value is computed as ``monitor slo`` and ``monitor check``
compute it (``slo_values``, ``feature_freshness``) over the rule's own window, without
recording it: the dashboard only reads. Alerts come from ``alert_states`` (open: the
rule fires now) and ``alert_history`` (resolved notices), as ``monitor alerts`` shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.monitoring import AlertRule
    from modelyard.workspace import Workspace

OPEN = ("firing", "undelivered")  # the condition held long enough: on-call was paged
# A rule's condition says when the SLO is missed; the target is the opposite.
OPPOSITE = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}


def model_of(ref: str | None) -> str | None:
    """NAME of NAME, NAME@ALIAS or NAME/VERSION."""
    return None if ref is None else ref.split("@")[0].split("/")[0]


def rules_of(ws: Workspace, model: str) -> tuple[list[AlertRule], str]:
    """(the alert rules about ``model``, why they could not be read)."""
    try:
        return [r for r in ws.alerting.rules if model_of(r.model) == model], ""
    except ModelyardError as exc:  # a broken [alerts] table: the page still shows the rest
        return [], exc.message


def slo_rows(ws: Workspace, rules: list[AlertRule]) -> list[dict[str, Any]]:
    """One row per SLO rule: target, current value over its window, met or missed."""
    from modelyard.monitoring import SLO_METRICS, alert_states

    states = alert_states(ws.metadata)
    now = datetime.now(UTC)
    cache: dict[tuple[str, str], dict[str, float | None]] = {}
    rows = []
    for rule in rules:
        if rule.family != "slo":
            continue
        indicator = rule.metric.split(".", 1)[1]
        op = next(
            o for o in sorted(OPPOSITE, key=len, reverse=True) if rule.condition.startswith(o)
        )
        number = rule.condition[len(op) :].strip()
        row: dict[str, Any] = {
            "rule": rule.name,
            "indicator": indicator,
            "meaning": SLO_METRICS.get(indicator, ""),
            "target": f"{OPPOSITE[op]} {number}",
            "window": rule.window,
            "alert": states.get(rule.name, {}).get("state", "not checked yet"),
            "value": None,
            "note": "",
        }
        try:
            row["value"] = _value(ws, rule, indicator, now, cache)
        except ModelyardError as exc:
            row["state"], row["note"] = "error", exc.message
            rows.append(row)
            continue
        if row["value"] is None:
            row["state"] = "no data"
        else:
            row["state"] = "missed" if rule.holds(row["value"]) else "met"
        rows.append(row)
    return rows


def _value(
    ws: Workspace,
    rule: AlertRule,
    indicator: str,
    now: datetime,
    cache: dict[tuple[str, str], dict[str, float | None]],
) -> float | None:
    from modelyard.monitoring import feature_freshness, resolve_model, slo_values

    assert rule.model is not None  # rules_of keeps the rules that name this model
    if indicator == "feature_freshness_s":
        view = rule.view
        if view is None:
            binding = ws.registry.get(rule.model).features
            if binding is None:
                return None
            view = binding.service
        return feature_freshness(ws.features, view, now)
    key = (rule.model, rule.window)
    if key not in cache:
        name, version = resolve_model(ws.registry, rule.model)
        cache[key] = slo_values(ws.predictions, name, now - rule.span, now, version=version)
    return cache[key].get(indicator)


def model_alerts(ws: Workspace, model: str, rules: list[AlertRule]) -> list[dict[str, Any]]:
    """The open alerts about ``model`` (oldest first), then its resolved ones (newest first)."""
    from modelyard.monitoring import alert_history, alert_states

    events = alert_history(ws.metadata, limit=500)
    # Rules removed from modelyard.toml are still known by the subject of their notices.
    about = {r.name: r for r in rules}
    mine = set(about) | {e["rule"] for e in events if model_of(e["subject"]) == model}
    last_firing: dict[str, dict[str, Any]] = {}
    for event in reversed(events):  # oldest first: the newest firing notice stays
        if event["state"] == "firing":
            last_firing[event["rule"]] = event
    open_rows = []
    for name, state in alert_states(ws.metadata).items():
        if name not in mine or state["state"] not in OPEN:
            continue
        fired = last_firing.get(name, {})
        rule = about.get(name)
        open_rows.append(
            {
                "state": "firing",
                "rule": name,
                "severity": rule.severity if rule else fired.get("severity", ""),
                "metric": rule.metric if rule else fired.get("metric", ""),
                "value": state["value"],
                "at": state["since"],
                "message": fired.get("message", ""),
            }
        )
    resolved = [
        {**e, "state": "resolved"} for e in events if e["rule"] in mine and e["state"] == "resolved"
    ]
    return sorted(open_rows, key=lambda r: r["at"]) + resolved[:50]
