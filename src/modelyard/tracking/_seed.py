"""``seed_everything``: one call seeds every generator a training script is likely to use."""

from __future__ import annotations

import os
import random
import sys

import numpy as np

_current: int | None = None


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and (when imported) PyTorch; runs started afterwards record it."""
    global _current
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        from modelyard.errors import InvalidInputError

        raise InvalidInputError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    # Only child processes see this; it keeps their str hashing reproducible.
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    _current = seed
    return seed


def current_seed() -> int | None:
    return _current
