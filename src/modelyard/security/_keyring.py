"""The keys a server checks requests against, held in memory.

A request's key is verified once (an HMAC, about 2 us) and then found in a dict
(about 0.1 us), so auth adds next to nothing to a prediction. The server reloads every
key from the store each poll interval (``refresh``), which is how a revocation
reaches it; a key id it has never seen triggers a reload at once (at most one a second,
so a stream of made-up keys cannot hammer the store: a request for an unseen key waits
for the next reload), so a new key works within a second of its creation.
Rate limits are a token bucket per key, in this process.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from modelyard._time import now_us, to_us
from modelyard.errors import ForbiddenError, RateLimitedError, UnauthenticatedError
from modelyard.security._audit import signed_out
from modelyard.security._keys import PREFIX, ApiKey, list_keys, split_key
from modelyard.security._roles import Permission, needed_roles, refusal

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore

_HOW = "send 'Authorization: Bearer KEY' with a key from 'modelyard keys create'"
_MIN_RELOAD_S = 1.0
_MAX_VERIFIED = 10_000


def missing_key() -> UnauthenticatedError:
    return UnauthenticatedError(f"this server requires an API key; {_HOW}", "missing")


def bearer(authorization: str | None) -> str:
    """The key in an ``Authorization: Bearer KEY`` value (401 when there is none)."""
    if not authorization:
        raise missing_key()
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise UnauthenticatedError(
            f"the Authorization header is not 'Bearer KEY'; {_HOW}", "malformed"
        )
    return value.strip()


class KeyRing:
    """Every key of the store, verified against presented keys in memory."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata
        self._by_id: dict[str, ApiKey] = {}
        self._verified: dict[str, tuple[ApiKey, float]] = {}  # key text -> (key, expiry µs)
        self._buckets: dict[str, list[float]] = {}  # key id -> [tokens, at]
        self._unknown_at = -math.inf  # the last reload an unknown key id asked for
        self.signed_out: dict[str, int] = {}  # key id -> its last dashboard sign-out (µs)

    def refresh(self) -> None:
        """Reload every key from the store (blocking I/O: run it off the event loop)."""
        self.signed_out = signed_out(self.metadata)
        keys = {k.key_id: k for k in list_keys(self.metadata)}
        self._by_id = keys
        self._verified = {}

    def reload_wait(self, presented: str) -> float | None:
        """Seconds to wait before reloading for ``presented``, a key id this ring has not
        seen (0: reload now); None when no reload would help. Claims that reload."""
        parts = split_key(presented)
        return None if parts is None else self.reload_wait_for(parts[0])

    def reload_wait_for(self, key_id: str) -> float | None:
        """``reload_wait`` for a key id (a dashboard session names one)."""
        if key_id in self._by_id:
            return None
        now = time.monotonic()
        at = max(now, self._unknown_at + _MIN_RELOAD_S)
        self._unknown_at = at
        return at - now

    def check(self, presented: str) -> ApiKey:
        """The active key ``presented`` is, or a 401 that says why not."""
        hit = self._verified.get(presented)
        if hit is not None and hit[1] > now_us():
            return hit[0]
        parts = split_key(presented)
        if parts is None:
            shape = (
                f"a modelyard API key reads {PREFIX}<12 hex digits>_<secret>, as printed"
                if presented.startswith(PREFIX)
                else f"that is not a modelyard API key (they start {PREFIX})"
            )
            raise UnauthenticatedError(f"{shape}; {_HOW}", "malformed")
        key = self._by_id.get(parts[0])
        if key is None or not key.matches(parts[1]):
            raise UnauthenticatedError(
                f"API key {PREFIX}{parts[0]}_… is not known to this server; check it, or "
                "create one with 'modelyard keys create'",
                "unknown",
            )
        _check_active(key)
        if len(self._verified) >= _MAX_VERIFIED:
            self._verified.clear()
        expiry = math.inf if key.expires_at is None else to_us(key.expires_at)
        self._verified[presented] = (key, expiry)
        return key

    def by_session(self, key_id: str, issued_us: int) -> ApiKey:
        """The active key a session names; 401 if the key is gone or signed out since."""
        if issued_us <= self.signed_out.get(key_id, 0):
            raise UnauthenticatedError(
                "this dashboard session was signed out; sign in again at /ui/sign-in",
                "signed_out",
            )
        return self.by_id(key_id)

    def by_id(self, key_id: str) -> ApiKey:
        """The active key ``key_id`` (a signed-in session names it); 401 if it is gone."""
        key = self._by_id.get(key_id)
        if key is None:
            raise UnauthenticatedError(
                f"API key {key_id} of this session is not known to this server; sign in "
                "again at /ui/sign-in",
                "unknown",
            )
        _check_active(key)
        return key

    def permit(self, key: ApiKey, permission: Permission, model: str | None, what: str) -> None:
        """403 unless ``key`` may do ``what`` (a route or RPC, for the message)."""
        why = refusal(key, permission, model)
        if why == "wrong_role":
            roles = " or ".join(needed_roles(permission))
            raise ForbiddenError(
                f"{key.describe()} may not call {what}: it needs role {roles}", why
            )
        if why == "wrong_model":
            allowed = ", ".join(key.models or ())
            raise ForbiddenError(
                f"{key.describe()} may use models {allowed} only, not '{model}'; "
                "use a key for that model",
                why,
            )
        if key.rate is not None:
            self._take(key, key.rate)

    def _take(self, key: ApiKey, rate: float) -> None:
        now = time.monotonic()
        burst = max(1.0, rate)
        bucket = self._buckets.get(key.key_id)
        if bucket is None:
            bucket = self._buckets[key.key_id] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            wait = math.ceil((1.0 - tokens) / rate)
            raise RateLimitedError(
                f"{key.describe()} may send {rate:g} requests a second; retry after {wait} s",
                wait,
            )
        bucket[0] = tokens - 1.0


def _check_active(key: ApiKey) -> None:
    state = key.state()
    if state != "active":
        when = key.revoked_at if state == "revoked" else key.expires_at
        raise UnauthenticatedError(
            f"API key {key.key_id} ({key.name}) {state} at {when:%Y-%m-%d %H:%M:%S} UTC; "
            "ask an admin for a new one ('modelyard keys create')",
            state,
        )
