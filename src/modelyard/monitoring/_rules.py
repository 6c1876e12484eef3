"""Alert rules and sinks, as declared in ``modelyard.toml`` and checked when it loads.

    [[alerts.rules]]
    name = "churn-drift"
    model = "churn@production"
    metric = "drift.share"          # or drift.psi.<column>, quality.roc_auc, slo.latency_p99_ms …
    condition = "> 0.3"
    window = "1d"
    severity = "critical"           # info | warning | critical
    for = "30m"                     # must hold this long (over successive checks) to fire
    sinks = ["log", "oncall"]

    [alerts.sinks.oncall]
    type = "webhook"
    url = "https://hooks.slack.com/services/…"
    format = "slack"

A mistake (an unknown metric, a bad condition, a sink that is not declared) is a
ConfigError naming the rule and the fix when the configuration is read, so it shows
on the next command, not when the rule would have fired.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard._time import parse_duration
from modelyard.config import register_table
from modelyard.errors import ConfigError, InvalidInputError
from modelyard.monitoring._sinks import LogSink, Sink, build_sink
from modelyard.monitoring._slo import SLO_METRICS

QUALITY_METRICS = (
    "accuracy",
    "f1",
    "roc_auc",
    "pr_auc",
    "calibration_error",
    "mae",
    "rmse",
    "rows",
)
DRIFT_SUMMARY = ("share", "drifted", "rows")
DRIFT_STATS = (
    "psi",
    "ks",
    "ks_p_value",
    "js",
    "chi2",
    "chi2_p_value",
    "cramers_v",
    "null_rate_change",
    "unseen_share",
    "detected",
)

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


def known_metrics() -> list[str]:
    """Every metric a rule may name (``<column>`` stands for an input column)."""
    return [
        *(f"drift.{m}" for m in DRIFT_SUMMARY),
        *(f"drift.{s}.<column>" for s in DRIFT_STATS),
        *(f"quality.{m}" for m in QUALITY_METRICS),
        *(f"slo.{m}" for m in SLO_METRICS),
    ]


def check_metric(name: str) -> str:
    family, _, rest = name.partition(".")
    stat, _, column = rest.partition(".")
    ok = (
        (family == "drift" and rest in DRIFT_SUMMARY)
        or (family == "drift" and stat in DRIFT_STATS and bool(column))
        or (family == "quality" and rest in QUALITY_METRICS)
        or (family == "slo" and rest in SLO_METRICS)
    )
    if not ok:
        raise ValueError(f"unknown metric {name!r}; use one of: {', '.join(known_metrics())}")
    return name


class AlertRule(BaseModel):
    """One rule: when ``metric`` of ``model`` (or feature ``view``) meets ``condition``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    metric: str
    condition: str
    model: str | None = None
    view: str | None = None
    window: str = "1h"
    severity: Literal["info", "warning", "critical"] = "warning"
    for_: str = Field(default="0s", alias="for")
    sinks: tuple[str, ...] = ("log",)
    on_no_data: Literal["ok", "firing"] = "ok"
    description: str = ""
    # Per-column overrides of the drift thresholds, as in ``drift(thresholds=…)``.
    thresholds: dict[str, dict[str, float]] = {}

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return check_metric(value)

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str) -> str:
        if _CONDITION.fullmatch(value) is None:
            raise ValueError(
                f"{value!r} is not a condition; write an operator and a number: '> 0.3', '<= 0.85'"
            )
        return value.strip()

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_duration(value, "")  # the message gets the field's name in front
        return value

    @field_validator("for_")
    @classmethod
    def _for(cls, value: str) -> str:
        parse_duration(value, "", allow_zero=True)
        return value

    @property
    def family(self) -> str:
        return self.metric.split(".", 1)[0]

    @property
    def span(self) -> timedelta:
        return parse_duration(self.window, "window")

    @property
    def hold(self) -> timedelta:
        return parse_duration(self.for_, "for", allow_zero=True)

    @property
    def subject(self) -> str:
        return self.model if self.model is not None else f"view:{self.view}"

    def holds(self, value: float) -> bool:
        found = _CONDITION.fullmatch(self.condition)
        assert found is not None  # validated above
        return _OPS[found.group(1)](value, float(found.group(2)))


@dataclass(frozen=True)
class Alerting:
    """The validated ``[alerts]`` section: rules, and sinks by name."""

    rules: tuple[AlertRule, ...] = ()
    sinks: Mapping[str, Sink] = field(default_factory=dict)

    def rule(self, name: str) -> AlertRule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        known = ", ".join(r.name for r in self.rules) or "none are declared"
        raise InvalidInputError(f"no alert rule named {name!r}; rules: {known}")


def parse_alerts(section: Any, root: Path, source: str) -> Alerting:
    """Validate ``[alerts]`` (``rules`` and ``sinks``); errors name ``source`` and the rule."""
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: 'alerts' must be a table with rules and sinks")
    unknown = set(section) - {"rules", "sinks"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown key 'alerts.{sorted(unknown)[0]}'; [alerts] holds "
            "[[alerts.rules]] and [alerts.sinks.NAME]"
        )
    sinks: dict[str, Sink] = {"log": LogSink(root=root)}
    for name, options in (section.get("sinks") or {}).items():
        if not isinstance(options, dict):
            raise ConfigError(f"{source}: alerts.sinks.{name} must be a table with a type")
        try:
            sinks[name] = build_sink(name, options, root)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    rules: list[AlertRule] = []
    for i, raw in enumerate(section.get("rules") or []):
        label = raw.get("name", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
        rule = _rule(raw, f"{source}: alert rule {label!r}")
        missing = [s for s in rule.sinks if s not in sinks]
        if missing:
            raise ConfigError(
                f"{source}: alert rule {label!r} sends to sink {missing[0]!r}, which is not "
                f"declared; add [alerts.sinks.{missing[0]}] or use one of: {', '.join(sinks)}"
            )
        if any(r.name == rule.name for r in rules):
            raise ConfigError(f"{source}: two alert rules are named {rule.name!r}; rename one")
        rules.append(rule)
    return Alerting(tuple(rules), sinks)


register_table("alerts", lambda body, source, root: parse_alerts(body, root, source))


def _rule(raw: Any, where: str) -> AlertRule:
    try:
        rule = AlertRule.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "rule"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {name}: {message}") from None
    if rule.metric == "slo.feature_freshness_s":
        if rule.view is None and rule.model is None:
            raise ConfigError(f'{where}: slo.feature_freshness_s needs view = "NAME" or a model')
    elif rule.model is None:
        raise ConfigError(f'{where}: {rule.metric} needs model = "NAME@ALIAS"')
    if (
        rule.family == "drift"
        and rule.model is not None
        and "@" not in rule.model
        and "/" not in rule.model
    ):
        raise ConfigError(
            f"{where}: drift compares one version with its training data; "
            f'write model = "{rule.model}@production" (or NAME/VERSION)'
        )
    return rule
