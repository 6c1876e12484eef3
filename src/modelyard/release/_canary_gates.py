"""The release gates a canary passes before its first step, as ``promote`` would judge them.

A canary ends by moving the alias that ``promote`` guards, so it must not be a way
around the gates: the same gates (``modelyard.toml``'s, plus any given), on the same
holdout, against the same champion, before any traffic moves. A failure refuses the
rollout (``ReleaseBlockedError``, recorded as ``canary-blocked``) unless it is forced
with a reason, exactly as ``promote --force --reason`` is. A model that declares no
gates has nothing to judge here: its canary judges live traffic only, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInputError, ReleaseBlockedError
from modelyard.registry import ModelVersion
from modelyard.release._check import REPLAY_ROWS, GateReport, HoldoutSource, evaluate, gate_list
from modelyard.release._gates import Gate
from modelyard.release._steps import CheckProgress

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class CanaryGates:
    """What ``promote`` takes to judge a candidate, for a canary: extra gates, the holdout,
    its target, the latency replay, and the override (``force`` with a ``reason``)."""

    gates: Sequence[str | Gate] = ()
    holdout: HoldoutSource | None = None
    target: str | None = None
    replay_rows: int = REPLAY_ROWS
    force: bool = False
    reason: str | None = None

    def check(self) -> None:
        """The override's own rule, checked before anything runs (``promote``'s wording)."""
        if self.force and not (self.reason or "").strip():
            raise InvalidInputError(
                "--force needs --reason TEXT: a forced canary is recorded with why it "
                "skipped the failed gates"
            )


def judge_gates(
    ws: Workspace,
    name: str,
    candidate: ModelVersion,
    champion: ModelVersion,
    *,
    candidate_alias: str,
    champion_alias: str,
    options: CanaryGates,
    progress: CheckProgress | None = None,
) -> GateReport | None:
    """The gate report of the candidate against the champion; None when none are declared."""
    chosen = gate_list(ws, name, options.gates)
    if not chosen:
        return None
    return evaluate(
        ws,
        candidate,
        champion,
        gates=chosen,
        candidate_alias=candidate_alias,
        champion_alias=champion_alias,
        holdout=options.holdout,
        target=options.target,
        replay_rows=options.replay_rows,
        progress=progress,
    )


def enforce(
    report: GateReport, options: CanaryGates, candidate_ref: str, record: Callable[..., None]
) -> None:
    """Record the verdict (canary-gates: passed, canary-force, canary-blocked) through the
    rollout's ``record``, then raise ``ReleaseBlockedError`` if it refuses the rollout."""
    if report.passed:
        action = "canary-gates"
    else:
        action = "canary-force" if options.force else "canary-blocked"
    forced = action == "canary-force"
    record(
        action,
        passed=report.passed,
        reason=options.reason if forced else None,
        details=report.to_json_dict(),
    )
    if action == "canary-blocked":
        raise blocked(report, candidate_ref)


def blocked(report: GateReport, candidate_ref: str) -> ReleaseBlockedError:
    """The one-line refusal, naming the first failed gate and how it missed."""
    failed = report.failures
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return ReleaseBlockedError(
        f"canary of {candidate_ref} refused: release gate '{failed[0].gate}' failed "
        f"({failed[0].how()}){more}; no traffic moved. See 'modelyard release check "
        f"{report.model}', fix the candidate, or pass --force --reason TEXT",
        failed=[r.gate for r in failed],
    )
