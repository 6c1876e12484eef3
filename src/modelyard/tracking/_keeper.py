"""The thread that bounds what a run can lose: it flushes buffered metrics every
``flush_s`` and renews the run's lease every ``renew_s``.

A ``log_metric`` that returned is therefore in the store within about ``flush_s``
(plus one commit), even if the process is then killed; and a run whose process died
stops renewing, so readers mark it failed once its lease lapses (``_query.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("modelyard.tracking")


class Keeper:
    """Calls ``flush`` every ``flush_s`` and ``renew`` every ``renew_s`` until ``stop``."""

    def __init__(
        self,
        name: str,
        flush: Callable[[], None],
        renew: Callable[[], None],
        *,
        flush_s: float,
        renew_s: float,
    ) -> None:
        self.name = name
        self.flush = flush
        self.renew = renew
        self.flush_s = flush_s
        self.renew_s = renew_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop and wait for a flush in progress (the caller flushes what is left)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        renew_at = time.monotonic() + self.renew_s
        while not self._stop.wait(min(self.flush_s, max(0.0, renew_at - time.monotonic()))):
            self._guarded(self.flush)
            if time.monotonic() >= renew_at:
                self._guarded(self.renew)
                renew_at = time.monotonic() + self.renew_s

    def _guarded(self, action: Callable[[], None]) -> None:
        """A store that is down must not kill the thread: warn once, retry next tick."""
        try:
            action()
        except Exception as exc:
            if not self._failing:
                logger.warning(
                    "run %s cannot write to the metadata store (%s: %s); metrics stay "
                    "buffered and are retried",
                    self.name,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
            self._failing = True
            return
        self._failing = False
