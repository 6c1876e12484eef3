"""A model version's reference profile with its outputs beside its inputs.

Drift of the inputs says the world changed; drift of the outputs says the model now
answers differently (more churners flagged, say), which is what a team acts on. The
outputs the model gave on its reference rows are profiled with the same bins and kept
in the same profile as ``output.<name>``, the name the prediction log gives them, so
monitoring compares logged outputs as it compares logged inputs.
"""

from __future__ import annotations

from typing import Any

from modelyard.contracts import Profile, as_frame, profile
from modelyard.errors import InvalidInputError
from modelyard.registry._signature import Signature

OUTPUT_PREFIX = "output."


def with_outputs(reference: Profile, outputs: Any, signature: Signature, rows: int) -> Profile:
    """``reference`` plus the profile of ``outputs`` (the model's outputs on its ``rows``
    reference rows), each output column named ``output.<name>``."""
    frame = as_frame(outputs)
    names = [n for n in signature.outputs.names if n in frame.columns]
    if not names:
        raise InvalidInputError(
            f"reference_outputs has none of the model's outputs "
            f"({', '.join(signature.outputs.names)}); pass the model's predictions on the "
            "reference rows, with the output names of its signature"
        )
    if len(frame) != rows:
        raise InvalidInputError(
            f"reference_outputs has {len(frame)} rows but reference_data has {rows}; "
            "pass the outputs of exactly the reference rows"
        )
    scored = profile(frame[names], bins=reference.bins)
    columns = {**reference.columns}
    columns.update({OUTPUT_PREFIX + name: col for name, col in scored.columns.items()})
    return reference.model_copy(update={"columns": columns})
