"""Whether a candidate version can take its champion's place: one rule for every caller.

``modelyard release check | promote | canary`` refuse an incompatible candidate before
anything moves, and every server refuses to route traffic to one. Both ask this module,
so a candidate that a rollout accepts is one that the servers will serve (two rules
that disagreed once let a rollout start that every server refused, and each step
then rolled back for "no traffic").

The rule, from the callers' side: every request the champion answers must work
unchanged, and every answer must still carry what the champion returned.

- Each champion input is still an input, admitting at least the same values: the
  same dtype (or int64 widened to float64), not newly non-nullable, categories and
  ranges not narrowed.
- An input the champion does not take is allowed only when it is nullable: callers do
  not send it, and the server passes null for it (the same value a record that omits
  a nullable field gets).
- Each champion output is still returned, with the same dtype; new outputs are fine.
"""

from __future__ import annotations

from modelyard.contracts import Field, Schema
from modelyard.registry._signature import Signature


def describe_field(field: Field) -> str:
    """``float64 nullable in [0, 1]``: how a message shows a field's contract."""
    text = field.dtype + (" nullable" if field.nullable else "")
    if field.categories is not None:
        text += f" in {list(field.categories)}"
    if field.min is not None or field.max is not None:
        text += f" in [{field.min}, {field.max}]"
    return text


def _accepts(new: Field, old: Field) -> bool:
    """True when every value ``old`` admits is admitted by ``new``."""
    # An int64 input may widen to float64: every integer a client sends is still accepted.
    if new.dtype != old.dtype and (old.dtype, new.dtype) != ("int64", "float64"):
        return False
    if old.nullable and not new.nullable:
        return False
    if new.categories is not None and (
        old.categories is None or not set(old.categories) <= set(new.categories)
    ):
        return False
    low_ok = new.min is None or (old.min is not None and old.min >= new.min)
    high_ok = new.max is None or (old.max is not None and old.max <= new.max)
    return low_ok and high_ok


def input_problems(champion: Schema, candidate: Schema) -> list[str]:
    """Why requests valid for ``champion`` would not be valid for ``candidate``."""
    problems: list[str] = []
    new_inputs = {f.name: f for f in candidate.fields}
    for old in champion.fields:
        new = new_inputs.get(old.name)
        if new is None:
            problems.append(f"input '{old.name}' ({describe_field(old)}) is missing")
        elif not _accepts(new, old):
            problems.append(
                f"input '{old.name}' is {describe_field(old)} in the champion "
                f"but {describe_field(new)} in the candidate"
            )
    old_names = set(champion.names)
    for new in candidate.fields:
        if new.name not in old_names and not new.nullable:
            problems.append(
                f"input '{new.name}' ({describe_field(new)}) is required but the champion's "
                "callers do not send it"
            )
    return problems


def signature_problems(champion: Signature, candidate: Signature) -> list[str]:
    """Why callers of ``champion`` would break on ``candidate`` (empty: compatible)."""
    problems = input_problems(champion.inputs, candidate.inputs)
    new_outputs = {f.name: f for f in candidate.outputs.fields}
    for old in champion.outputs.fields:
        new = new_outputs.get(old.name)
        if new is None:
            problems.append(f"output '{old.name}' ({old.dtype}) is no longer returned")
        elif new.dtype != old.dtype:
            problems.append(
                f"output '{old.name}' is {old.dtype} in the champion but {new.dtype} "
                "in the candidate"
            )
    return problems
