"""Browser sessions for the dashboard: a signed cookie that names a key, never holds it.

A person signs in on /ui/sign-in with an API key; the server answers with a cookie
``<key id>.<expiry>.<HMAC>`` under a key derived from the workspace's signing key, so
every replica of a workspace accepts the others' sessions. The key itself never lives
in the browser: a session names its key id, and the key's role, models, revocation and
expiry are checked on every request as for a bearer key (a revoked key ends its
sessions within the server's key reload). A session ends after ``ttl_s``, or when its
key signs out: sign-out is recorded in the audit log (``ui.sign-out``), which every
server reads with the keys, and ends every session of that key issued before it.

Also the dashboard's CSRF token: an HMAC of the session under another derived key, put
in every form that acts and checked by the route (the cookie is also SameSite=Strict).
Starlette's SessionMiddleware signs a whole dict with itsdangerous and knows nothing of
keys; what is needed here is a dozen lines of HMAC, so they are written out.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from modelyard.errors import ForbiddenError, UnauthenticatedError

COOKIE = "modelyard_session"
DEFAULT_TTL_S = 12 * 3600.0
_SIGN_IN = "sign in again at /ui/sign-in with an API key"


class Sessions:
    """Issues and checks session cookies and CSRF tokens under one secret."""

    def __init__(self, signing_key: bytes, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._mac_key = hmac.new(signing_key, b"modelyard ui session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(signing_key, b"modelyard ui csrf", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def issue(self, key_id: str, now: float | None = None) -> str:
        """A session cookie's value for ``key_id``, valid for ``ttl_s``."""
        issued = int((time.time() if now is None else now) * 1_000_000)
        expires = issued + int(self.ttl_s * 1_000_000)
        body = f"{key_id}.{issued}.{expires}"
        return f"{body}.{self._mac(body)}"

    def key_id(self, token: str, now: float | None = None) -> tuple[str, int]:
        """(key id, issued at in µs) of a session cookie; 401 if it is forged, mangled or
        expired. A session issued before its key's last sign-out is refused by the caller."""
        body, _, mac = token.rpartition(".")
        key_id, issued, expires = (body.split(".") + ["", ""])[:3]
        well_formed = bool(key_id) and issued.isdigit() and expires.isdigit()
        if not well_formed or not hmac.compare_digest(mac, self._mac(body)):
            raise UnauthenticatedError(
                f"the dashboard session is not valid; {_SIGN_IN}", "malformed"
            )
        if int(expires) <= (time.time() if now is None else now) * 1_000_000:
            raise UnauthenticatedError(f"the dashboard session expired; {_SIGN_IN}", "expired")
        return key_id, int(issued)

    def csrf(self, session: str) -> str:
        """The CSRF token of a session (or of ``""``: a server without keys)."""
        return hmac.new(self._csrf_key, session.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: str, token: str) -> None:
        if not token or not hmac.compare_digest(token, self.csrf(session)):
            raise ForbiddenError(
                "the form's CSRF token does not match this session; reload the page and "
                "submit it again",
                "csrf",
            )

    def _mac(self, body: str) -> str:
        return hmac.new(self._mac_key, body.encode(), hashlib.sha256).hexdigest()
