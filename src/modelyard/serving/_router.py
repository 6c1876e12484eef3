"""Traffic policies: which variant (champion or candidate) answers a request.

Canary picks at random; A/B hashes a request key so a user always sees the same
variant (a request without the key goes to the champion: it has no assignment to
keep); shadow always answers with the champion and mirrors the input to the
candidate. The hash is blake2b, not Python's ``hash``, so every replica and every
restart assigns a key to the same variant.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from modelyard.errors import FieldError, SchemaValidationError
from modelyard.serving._options import ABTest, Canary, Shadow

Policy = Canary | ABTest | Shadow | None


def bucket(key: str) -> float:
    """A stable position in [0, 100) for ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


def choose(policy: Policy, columns: dict[str, Any], rng: random.Random) -> tuple[bool, str | None]:
    """(use the candidate?, the A/B key that decided it, if any)."""
    if isinstance(policy, Canary):
        return rng.random() * 100 < policy.percent, None
    if isinstance(policy, ABTest):
        keys = {str(v) for v in columns.get(policy.key) or () if v is not None}
        if not keys:  # no key: no assignment to keep, the champion
            return False, None
        if len(keys) > 1:  # one variant answers a request: a client on the other would drift
            raise SchemaValidationError(
                [
                    FieldError(
                        policy.key,
                        f"rows of {len(keys)} different {policy.key}s in one request; an A/B "
                        f"test answers a request with one variant: send one {policy.key} "
                        "per request",
                    )
                ]
            )
        (key,) = keys
        return bucket(key) < policy.percent, key
    return False, None
