"""A small circuit breaker for the back ends a request calls (online store, cache).

Without it, a back end that hangs costs every request its full read timeout, and the
prediction threads fill up with waiting calls. After a failure the breaker is *open*
for ``retry_after_s``: callers skip the back end at once (the online store answers
503, the cache is bypassed). Then one call is let through as a probe; if it works the
breaker closes, so recovery needs no restart. A warning is logged when a back end
becomes unavailable and an info line when it is back: one line per outage, however
many requests meet it.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("modelyard.serving")

PROBE_LOST_S = 10.0  # longer than any back end's timeouts


class Breaker:
    """Open after a failure, for ``retry_after_s``; then one probe at a time."""

    def __init__(self, what: str, *, model: str, retry_after_s: float = 1.0) -> None:
        self.what = what
        self.model = model
        self.retry_after_s = retry_after_s
        self.error: str | None = None  # the last failure while open; None when closed
        self._retry_at = 0.0
        self._probing = False
        self._probe_at = 0.0
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self.error is None

    def allow(self) -> bool:
        """True if the caller may use the back end now (closed, or this call is the probe).

        The probe must end in ``succeeded``, ``failed`` or ``abandoned``; one that never
        reports (its task was cancelled) is given up after ``PROBE_LOST_S``.
        """
        if self.error is None:  # the hot path: no lock while the back end is healthy
            return True
        with self._lock:
            now = time.monotonic()
            probing = self._probing and now - self._probe_at < PROBE_LOST_S
            if probing or now < self._retry_at:
                return False
            self._probing, self._probe_at = True, now
            return True

    def abandoned(self) -> None:
        """The probe ended without telling whether the back end works (another error)."""
        self._probing = False

    def succeeded(self) -> None:
        if self.error is None:
            return
        with self._lock:
            was, self.error, self._probing = self.error, None, False
        if was is not None:
            logger.info(f"{self.what} is back", extra={"model": self.model})

    def failed(self, error: str) -> None:
        with self._lock:
            first = self.error is None
            self.error = error
            self._probing = False
            self._retry_at = time.monotonic() + self.retry_after_s
        if first:
            logger.warning(f"{self.what} unavailable", extra={"model": self.model, "error": error})
