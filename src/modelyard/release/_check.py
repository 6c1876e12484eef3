"""``check_release``: a candidate judged on a holdout set by the gates, against the champion.

The order is the contract: gates are parsed first (a typo costs nothing), then the
aliases resolve and the signatures are compared, then each gate's metrics are checked
against what applies to each model (from its output signature: no ROC AUC for a
regressor, no latency without a replay), then the holdout is found and checked against
the data contract, and only then are models loaded and evaluated. Every bad input
therefore fails before any work, and nothing here moves an alias. A metric that
applies but is undefined on this holdout (ROC AUC with one class) is not bad input:
its gate fails, and the check is recorded.

The latency replay (``--replay N``) is serial and in process: N holdout rows, one
record per call, through validation and the predictor, with no server and no batcher
(see ``replay_latency``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from modelyard.config import CONFIG_FILE
from modelyard.contracts import fingerprint
from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.registry import ModelRef, ModelVersion
from modelyard.release._evaluate import (
    applicable_metrics,
    check_compatible,
    contract_result,
    model_kind,
    quality_metrics,
    replay_latency,
)
from modelyard.release._gates import (
    LATENCY_METRICS,
    Gate,
    GateResult,
    apply_gates,
    missing_metrics,
    parse_gates,
    parse_release_config,
)
from modelyard.release._records import actor_of, record
from modelyard.release._steps import CheckProgress, QuietCheck
from modelyard.tracking import Holdout, read_holdout, read_holdout_file

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

REPLAY_ROWS = 200
HoldoutSource = Holdout | pd.DataFrame | str | os.PathLike[str]


@dataclass(frozen=True)
class GateReport:
    """The outcome of a release check: every gate's row, and the metrics behind them."""

    model: str
    candidate: str
    candidate_version: int
    champion: str
    champion_version: int | None
    holdout: str
    rows: int
    target: str
    kind: str
    holdout_fingerprint: str | None
    candidate_metrics: Mapping[str, float | None]
    champion_metrics: Mapping[str, float | None] | None
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """True when no row failed (a skipped gate is not a failure)."""
        return all(r.outcome != "fail" for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if r.outcome == "fail"]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "candidate": {"alias": self.candidate, "version": self.candidate_version},
            "champion": {"alias": self.champion, "version": self.champion_version},
            "holdout": {
                "source": self.holdout,
                "rows": self.rows,
                "target": self.target,
                "fingerprint": self.holdout_fingerprint,
            },
            "kind": self.kind,
            "metrics": {
                "candidate": dict(self.candidate_metrics),
                "champion": None if self.champion_metrics is None else dict(self.champion_metrics),
            },
            "gates": [r.to_json_dict() for r in self.results],
        }


def declared_gates(ws: Workspace, name: str) -> tuple[Gate, ...]:
    """The gates ``modelyard.toml`` declares for ``name`` (``[release.NAME]`` or ``[release]``)."""
    section = ws.config.tables.get("release")
    if section is None:
        return ()
    return parse_release_config(section, CONFIG_FILE).gates_for(name)


def resolve(
    ws: Workspace, name: str, candidate: str, champion: str
) -> tuple[ModelVersion, ModelVersion | None]:
    """The two versions; no champion (None) when that alias is not set yet: a first release."""
    registry = ws.registry
    chosen = registry.get(ModelRef.parse(f"{name}@{candidate}"))
    ref = ModelRef.parse(f"{name}@{champion}")
    try:
        current = registry.get(ref)
    except NotFoundError:  # the model exists (the candidate resolved), so only the alias is new
        current = None
    if current is not None:
        check_compatible(chosen, current)
    return chosen, current


def _holdout(ws: Workspace, given: HoldoutSource | None, version: ModelVersion) -> Holdout:
    if isinstance(given, Holdout):
        return given
    if isinstance(given, pd.DataFrame):
        return Holdout(given, None, "the given data frame", fingerprint(given))
    if given is not None:
        return read_holdout_file(given)
    kept = None if version.run_id is None else read_holdout(ws.runs, ws.artifacts, version.run_id)
    if kept is None:
        raise InvalidInputError(
            f"{version.ref} has no holdout set: its training run logged none; keep one with "
            "modelyard.tracking.log_holdout(run, rows, target='LABEL') or pass --holdout FILE"
        )
    return kept


def _target(holdout: Holdout, given: str | None, version: ModelVersion) -> str:
    """The label column: as given, as the holdout declares it, or the one column left over."""
    columns = [str(c) for c in holdout.frame.columns]
    inputs = set(version.signature.inputs.names)
    chosen = given or holdout.target
    if chosen is None:
        # A column named like one of the model's outputs is its label; failing that, a
        # file of inputs plus one more column leaves no doubt which column that is.
        named = [c for c in columns if c in version.signature.outputs.names and c not in inputs]
        extra = [c for c in columns if c not in inputs]
        candidates = named if len(named) == 1 else extra
        if len(candidates) != 1:
            raise InvalidInputError(
                f"cannot tell which column of {holdout.source} is the target "
                f"(not inputs: {', '.join(extra) or 'none'}); pass --target COLUMN"
            )
        chosen = candidates[0]
    if chosen not in columns:
        raise InvalidInputError(
            f"{holdout.source} has no target column {chosen!r} "
            f"(columns: {', '.join(columns)}); pass --target COLUMN"
        )
    if chosen in inputs:
        raise InvalidInputError(
            f"target {chosen!r} is an input of {version.ref}; pass the label column as --target"
        )
    return chosen


def evaluate(
    ws: Workspace,
    candidate: ModelVersion,
    champion: ModelVersion | None,
    *,
    gates: Sequence[Gate],
    candidate_alias: str,
    champion_alias: str,
    holdout: HoldoutSource | None = None,
    target: str | None = None,
    replay_rows: int = REPLAY_ROWS,
    progress: CheckProgress | None = None,
) -> GateReport:
    """Judge ``candidate`` (and ``champion``) on the holdout; record nothing, move nothing."""
    steps = progress or QuietCheck()
    replayed = LATENCY_METRICS if replay_rows > 0 else ()

    def applies(version: ModelVersion) -> tuple[str, tuple[str, ...]]:
        kind, metrics = applicable_metrics(version)
        return kind, (*metrics, *replayed)

    missing_metrics(gates, applies(candidate), None if champion is None else applies(champion))
    versions = [candidate] if champion is None else [candidate, champion]
    with steps.step("reading the holdout set and checking it against the data contract"):
        rows = _holdout(ws, holdout, candidate)
        label = _target(rows, target, candidate)
        truth = rows.frame[label]
        features = rows.frame.drop(columns=[label])
        kind = model_kind(candidate)
        contract = contract_result(features, truth, versions)

    def report(
        results: Iterable[GateResult],
        mine: Mapping[str, float | None],
        theirs: Mapping[str, float | None] | None,
    ) -> GateReport:
        return GateReport(
            model=candidate.name,
            candidate=candidate_alias,
            candidate_version=candidate.version,
            champion=champion_alias,
            champion_version=None if champion is None else champion.version,
            holdout=rows.source,
            rows=len(rows.frame),
            target=label,
            kind=kind,
            holdout_fingerprint=rows.fingerprint,
            candidate_metrics=mine,
            champion_metrics=theirs,
            results=(contract, *results),
        )

    if contract.outcome == "fail":
        skipped = [GateResult(g.text, "skip", note="not evaluated: data contract") for g in gates]
        return report(skipped, {}, None)
    loaded = []
    for version in versions:
        with steps.step(f"loading {version.ref}"):
            loaded.append(ws.registry.load(version))
    metrics = []
    for model in loaded:
        with steps.step(f"evaluating {model.version.ref} on {len(features)} holdout rows"):
            metrics.append(quality_metrics(model, features, truth))
    if replay_rows > 0:
        shown = min(replay_rows, len(features))
        with steps.step(f"replaying {shown} rows one at a time for latency"):
            latency = replay_latency(loaded, features, rows=replay_rows)
        metrics = [{**quality, **lat} for quality, lat in zip(metrics, latency, strict=True)]
    mine = metrics[0]
    theirs = metrics[1] if champion is not None else None
    return report(apply_gates(gates, mine, theirs), mine, theirs)


def gate_list(ws: Workspace, name: str, extra: Iterable[str | Gate]) -> list[Gate]:
    """The declared gates, then the given ones (``--gate``), all parsed before any work."""
    given = parse_gates(extra)
    return [*declared_gates(ws, name), *given]


def check_release(
    ws: Workspace,
    name: str,
    *,
    candidate: str = "staging",
    champion: str = "production",
    gates: Iterable[str | Gate] = (),
    holdout: HoldoutSource | None = None,
    target: str | None = None,
    replay_rows: int = REPLAY_ROWS,
    actor: str | None = None,
    progress: CheckProgress | None = None,
) -> GateReport:
    """Evaluate ``name@candidate`` against ``name@champion`` and record the outcome.

    ``gates`` add to those ``modelyard.toml`` declares. ``holdout``: a data frame or a
    CSV/Parquet path; by default the set the candidate's training run kept.
    ``progress`` is told of each slow step as it runs.
    """
    chosen = gate_list(ws, name, gates)
    version, current = resolve(ws, name, candidate, champion)
    result = evaluate(
        ws,
        version,
        current,
        gates=chosen,
        candidate_alias=candidate,
        champion_alias=champion,
        holdout=holdout,
        target=target,
        replay_rows=replay_rows,
        progress=progress,
    )
    record(
        ws.metadata,
        model=name,
        action="check",
        actor=actor_of(ws, actor),
        alias=champion,
        from_version=result.champion_version,
        to_version=result.candidate_version,
        passed=result.passed,
        details=result.to_json_dict(),
    )
    return result
