"""Release gates: conditions a candidate must meet, alone or against the champion.

A gate is one line, ``METRIC OP VALUE`` or ``METRIC OP champion.METRIC [+|- NUMBER]``
with OP one of ``>= <= > <``::

    [release]                       # every model, unless it declares its own
    gates = ["p99_latency_ms <= 50"]

    [release.churn]
    gates = ["roc_auc >= 0.85", "roc_auc >= champion.roc_auc - 0.005", "p99_latency_ms <= 20"]

``[release.canary]`` belongs to canary rollouts (``_canary_config``), not to a model.

Gates are parsed when the configuration is read (``Workspace.config``), so a typo or an
unknown metric fails the next command with one line, not the release that needed it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modelyard.config import register_table
from modelyard.errors import ConfigError, InvalidInputError

CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "pr_auc", "log_loss", "calibration_error")
REGRESSION_METRICS = ("mae", "rmse", "r2")
LATENCY_METRICS = ("p50_latency_ms", "p99_latency_ms")
METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + REGRESSION_METRICS + LATENCY_METRICS

Op = Literal[">=", "<=", ">", "<"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_UNSIGNED = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_GATE = re.compile(
    rf"\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|>|<)\s*"
    rf"(?:champion\.(?P<other>[A-Za-z_][A-Za-z0-9_]*)\s*"
    rf"(?:(?P<sign>[-+])\s*(?P<offset>{_UNSIGNED}))?|(?P<value>[-+]?{_UNSIGNED}))\s*"
)
_GRAMMAR = "write 'METRIC OP VALUE' or 'METRIC OP champion.METRIC [+|- NUMBER]', OP in >= <= > <"


@dataclass(frozen=True)
class Gate:
    """One condition: ``metric op value``, or ``metric op champion.other + offset``."""

    text: str
    metric: str
    op: Op
    value: float | None = None
    champion_metric: str | None = None
    offset: float = 0.0

    @property
    def relative(self) -> bool:
        """True when the threshold comes from the champion (skipped on a first release)."""
        return self.champion_metric is not None

    def threshold(self, champion: Mapping[str, float | None] | None) -> float | None:
        """The number the candidate is held to; None when the champion lacks the metric."""
        if self.champion_metric is None:
            return self.value
        base = None if champion is None else champion.get(self.champion_metric)
        return None if base is None else base + self.offset

    def holds(self, value: float, threshold: float) -> bool:
        return _OPS[self.op](value, threshold)


def parse_gate(text: str) -> Gate:
    """Parse one gate line; an unknown metric or a bad line is an InvalidInputError."""
    match = _GATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInputError(f"gate {text!r} is not a condition; {_GRAMMAR}")
    for name in filter(None, (match["metric"], match["other"])):
        if name not in METRICS:
            raise InvalidInputError(
                f"gate {text!r} names unknown metric {name!r}; known metrics: {', '.join(METRICS)}"
            )
    offset = 0.0
    if match["offset"] is not None:
        offset = float(match["offset"]) * (-1.0 if match["sign"] == "-" else 1.0)
    op: Op = match["op"]  # type: ignore[assignment]  # the pattern admits only these four
    return Gate(
        text=" ".join(text.split()),
        metric=match["metric"],
        op=op,
        value=None if match["value"] is None else float(match["value"]),
        champion_metric=match["other"],
        offset=offset,
    )


def parse_gates(texts: Iterable[str | Gate]) -> list[Gate]:
    """Parse every line (Gate objects pass through), failing on the first bad one."""
    return [g if isinstance(g, Gate) else parse_gate(g) for g in texts]


# Sub-tables of [release] that configure a release feature, not a model's gates (so a
# model named like one takes its gates from the [release] defaults or --gate).
RESERVED = ("canary",)


@dataclass(frozen=True)
class ReleaseConfig:
    """The ``[release]`` table: default gates and each model's own."""

    defaults: tuple[Gate, ...] = ()
    models: Mapping[str, tuple[Gate, ...]] = field(default_factory=dict)

    def gates_for(self, name: str) -> tuple[Gate, ...]:
        """A model's own gates replace the defaults, so one model can differ from the rest."""
        return self.models.get(name, self.defaults)


def parse_release_config(section: Any, source: str) -> ReleaseConfig:
    """Validate ``[release]``; every error is a one-line ConfigError naming ``source``."""
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: 'release' must be a table: [release] gates = [...]")
    defaults: tuple[Gate, ...] = ()
    models: dict[str, tuple[Gate, ...]] = {}
    for key, body in section.items():
        if key == "gates":
            defaults = _gate_list(body, f"{source}: release.gates")
        elif key in RESERVED:
            # Checked here too, so that the whole [release] table fails at load as one.
            from modelyard.release._canary_config import parse_canary_config

            parse_canary_config(body, source)
        elif isinstance(body, dict):
            unknown = sorted(set(body) - {"gates"})
            if unknown:
                raise ConfigError(
                    f"{source}: unknown key 'release.{key}.{unknown[0]}'; "
                    f"[release.{key}] holds gates = [...]"
                )
            models[key] = _gate_list(body.get("gates", []), f"{source}: release.{key}.gates")
        else:
            raise ConfigError(
                f"{source}: unknown key 'release.{key}'; [release] holds gates = [...] "
                "and one [release.MODEL] table per model"
            )
    return ReleaseConfig(defaults, models)


register_table("release", lambda body, source, root: parse_release_config(body, source))


def _gate_list(raw: Any, where: str) -> tuple[Gate, ...]:
    if not isinstance(raw, list) or not all(isinstance(g, str) for g in raw):
        raise ConfigError(f'{where} must be a list of strings, e.g. ["roc_auc >= 0.85"]')
    try:
        return tuple(parse_gates(raw))
    except InvalidInputError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


# -- results -------------------------------------------------------------------------------
Outcome = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class GateResult:
    """One row of the report: a gate (or the data contract) and how it came out."""

    gate: str
    outcome: Outcome
    candidate: float | None = None
    champion: float | None = None
    threshold: float | None = None
    note: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "outcome": self.outcome,
            "candidate": self.candidate,
            "champion": self.champion,
            "threshold": self.threshold,
            "note": self.note,
        }

    def how(self) -> str:
        """How the row came out, in a few words: its note where it has one (the data
        contract's problems, an undefined metric), else its values."""
        if self.note:
            return self.note
        values = {"candidate": self.candidate, "champion": self.champion}
        values["threshold"] = self.threshold
        shown = [f"{k} {v:.4g}" for k, v in values.items() if v is not None]
        return ", ".join(shown) or "not met"


def apply_gates(
    gates: Sequence[Gate],
    candidate: Mapping[str, float | None],
    champion: Mapping[str, float | None] | None,
) -> list[GateResult]:
    """Judge each gate on the candidate's metrics, against the champion's where it says so."""
    results = []
    for gate in gates:
        value = candidate.get(gate.metric)
        theirs = None if champion is None else champion.get(gate.champion_metric or gate.metric)
        if gate.relative and champion is None:
            results.append(
                GateResult(gate.text, "skip", value, note="no champion yet (first release)")
            )
            continue
        threshold = gate.threshold(champion)
        if value is None or threshold is None or math.isnan(value) or math.isnan(threshold):
            # The metric applies (checked before anything loaded) but this holdout leaves it
            # undefined, e.g. ROC AUC when the labels hold one class: nothing shows the gate
            # holds, so it fails, recorded like any other.
            whose = "candidate" if value is None or math.isnan(value) else "champion"
            name = gate.metric if whose == "candidate" else gate.champion_metric or gate.metric
            note = f"n/a: the {whose}'s {name} is undefined on this holdout"
            results.append(GateResult(gate.text, "fail", value, theirs, threshold, note=note))
            continue
        outcome: Outcome = "pass" if gate.holds(value, threshold) else "fail"
        results.append(GateResult(gate.text, outcome, value, theirs, threshold))
    return results


def missing_metrics(
    gates: Sequence[Gate],
    candidate: tuple[str, Iterable[str]],
    champion: tuple[str, Iterable[str]] | None,
) -> None:
    """Raise when a gate needs a metric the check cannot give, whatever the holdout.

    ``candidate`` and ``champion``: (what the model is, in words; the metrics that apply
    to it, latency included when the check replays rows). No champion: its gates are
    skipped, not checked. A metric that applies but is undefined on the holdout is not
    this error: its gate fails, shown as n/a.
    """
    for gate in gates:
        needs = [(gate.metric, candidate, "")]
        if gate.champion_metric is not None and champion is not None:
            needs.append((gate.champion_metric, champion, "the champion's "))
        for name, (kind, metrics), whose in needs:
            have = set(metrics)
            if name in have:
                continue
            why = f"which a {kind} does not have"
            if name in LATENCY_METRICS:
                why = "which only a load replay measures; replay rows (--replay N, N > 0)"
            raise InvalidInputError(
                f"gate {gate.text!r} needs {whose}{name!r}, {why}; "
                f"metrics of this check: {', '.join(sorted(have))}"
            )
