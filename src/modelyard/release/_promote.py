"""Promote a candidate when its gates pass (or by force, with a reason), and roll back.

Each call appends one release record whatever the outcome, so the record answers
"who moved production, when, from which version to which, and on what evidence",
including the promotions that the gates refused. A move and its record are one
transaction (``Registry.move_alias``, ``Registry.rollback`` with ``also=``): a crash
leaves both or neither, and the "from" version is the one the move really replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInputError
from modelyard.registry import AliasMove, ModelVersion
from modelyard.release._check import (
    REPLAY_ROWS,
    GateReport,
    HoldoutSource,
    evaluate,
    gate_list,
    resolve,
)
from modelyard.release._gates import Gate
from modelyard.release._records import actor_of, write_record
from modelyard.release._steps import CheckProgress

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` did: ``moved`` says whether the alias now points at the candidate."""

    model: str
    alias: str
    from_version: int | None
    to_version: int
    moved: bool
    forced: bool
    report: GateReport | None

    @property
    def action(self) -> str:
        """The action as recorded: promote, force-promote or promote-blocked ("none" when the
        alias already pointed at the candidate, which records nothing)."""
        if self.report is None:
            return "none"
        if not self.moved:
            return "promote-blocked"
        return "force-promote" if self.forced else "promote"


def promote(
    ws: Workspace,
    name: str,
    *,
    candidate: str = "staging",
    to: str = "production",
    gates: Iterable[str | Gate] = (),
    holdout: HoldoutSource | None = None,
    target: str | None = None,
    force: bool = False,
    reason: str | None = None,
    replay_rows: int = REPLAY_ROWS,
    actor: str | None = None,
    progress: CheckProgress | None = None,
) -> Promotion:
    """Point ``name@to`` at ``name@candidate``'s version if the gates pass.

    ``force=True`` moves it even when a gate fails, and needs a ``reason`` for the record.
    On a first release (``to`` not set yet) gates against the champion are skipped.
    ``ConflictError`` (nothing moved, nothing recorded) when ``to`` moved while the
    gates ran: the verdict was about another champion.
    """
    if force and not (reason or "").strip():
        raise InvalidInputError(
            "--force needs --reason TEXT: a forced promotion is recorded with why it "
            "skipped the failed gates"
        )
    if candidate == to:
        raise InvalidInputError(
            f"candidate and target are both '{to}'; promote another alias, e.g. --candidate staging"
        )
    chosen = gate_list(ws, name, gates)
    version, champion = resolve(ws, name, candidate, to)
    if champion is not None and champion.version == version.version:
        # Nothing would move; re-running a pipeline after its promotion is not an error.
        return Promotion(name, to, champion.version, version.version, False, False, None)
    report = evaluate(
        ws,
        version,
        champion,
        gates=chosen,
        candidate_alias=candidate,
        champion_alias=to,
        holdout=holdout,
        target=target,
        replay_rows=replay_rows,
        progress=progress,
    )
    before = None if champion is None else champion.version
    moves = report.passed or force
    result = Promotion(
        name, to, before, version.version, moves, moves and not report.passed, report
    )
    who = actor_of(ws, actor)

    def write(conn: Connection, _: AliasMove | None = None) -> None:
        write_record(
            conn,
            model=name,
            action=result.action,
            actor=who,
            alias=to,
            from_version=before,  # a move happens only from there (compare-and-set)
            to_version=version.version,
            passed=report.passed,
            reason=reason,
            details={**report.to_json_dict(), "moved": moves},
        )

    if moves:
        ws.registry.move_alias(name, to, version.version, expect=before, also=write)
    else:
        with ws.metadata.write() as conn:
            write(conn)
    return result


def rollback(
    ws: Workspace,
    name: str,
    *,
    alias: str = "production",
    reason: str | None = None,
    actor: str | None = None,
) -> ModelVersion:
    """Move ``name@alias`` back to its previous version, and record who did it and why
    (in the moving transaction, with the version it really moved from)."""
    who = actor_of(ws, actor)

    def write(conn: Connection, move: AliasMove) -> None:
        write_record(
            conn,
            model=name,
            action="rollback",
            actor=who,
            alias=alias,
            from_version=move.from_version,
            to_version=move.to_version,
            reason=reason,
        )

    return ws.registry.rollback(name, alias, also=write)
