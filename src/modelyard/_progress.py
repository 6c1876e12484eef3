"""Progress of long work as plain lines: ``epoch 1/3 step 120/800 (15%) 3.2 step/s ETA 3m31s``.

Lines rather than a redrawn bar (rich, tqdm) because the reader is often a log file: a
job's log that ``modelyard jobs logs -f`` follows, a CI log, a scheduler's stderr. A bar
redrawn with carriage returns turns into one unreadable line there. Lines are throttled
(the first, then at most one per ``every_s``, then the last), so a loop of 100,000 steps
writes a few hundred lines, not 100,000.

Both the jobs (``JobContext.progress``) and training code that knows nothing of jobs
(the blueprints, taking a ``progress`` line callback) use it; so it sits in the bottom
layer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["Progress", "format_duration", "stderr_lines"]

Write = Callable[[str], None]


def format_duration(seconds: float) -> str:
    """``45s``, ``3m31s``, ``2h05m``: short enough for a progress line."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def stderr_lines(line: str) -> None:
    """Write ``line`` to stderr now (flushed: a pipe or file would hold it otherwise)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Progress:
    """Counts work done of ``total`` (None: unknown) and writes throttled lines to ``write``.

    Use ``advance(n)`` as work is done, ``describe`` to change the leading words (a new
    epoch), and ``close()`` or a ``with`` block to write the last line. ``clock`` is
    injectable so that tests need not sleep.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        unit: str = "step",
        desc: str = "",
        write: Write | None = None,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.unit = unit
        self.desc = desc
        self.write = write or stderr_lines
        self.every_s = every_s
        self.clock = clock
        self.done = 0
        self.note = ""
        self._started: float | None = None
        self._last_written: float | None = None
        self._last_line_count: int | None = None  # ``done`` as the last line showed it
        self._closed = False

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the clock (``advance`` does it too, for a caller that never calls this)."""
        if self._started is None:
            self._started = self.clock()

    def describe(self, desc: str) -> None:
        """New leading words (``epoch 2/3``), shown from the next line on."""
        self.desc = desc

    def advance(self, n: int = 1, *, note: str | None = None) -> None:
        """Count ``n`` more done; ``note`` (``loss 0.4312``) ends the lines from now on."""
        self.start()
        self.done += n
        if note is not None:
            self.note = note
        now = self.clock()
        first = self._last_written is None
        finished = self.total is not None and self.done >= self.total
        due = self._last_written is not None and now - self._last_written >= self.every_s
        if first or finished or due:
            self._emit(now)

    def close(self) -> None:
        """Write the last line, unless the one written last already says it all."""
        if self._closed:
            return
        self._closed = True
        now = self.clock()
        if self._started is not None and self._last_line_count != self.done:
            self._emit(now)

    def line(self, now: float | None = None) -> str:
        """The line as it reads now."""
        now = self.clock() if now is None else now
        elapsed = 0.0 if self._started is None else now - self._started
        parts = [self.desc] if self.desc else []
        if self.total is not None:
            share = 100.0 * self.done / self.total if self.total else 100.0
            parts.append(f"{self.unit} {self.done}/{self.total} ({share:.0f}%)")
        else:
            parts.append(f"{self.unit} {self.done}")
        rate = self.done / elapsed if elapsed > 0 else None
        if rate is not None and self.done:
            parts.append(_rate(rate, self.unit))
        if self.total is not None and self.done >= self.total:
            parts.append(f"done in {format_duration(elapsed)}")
        elif self.total is not None and rate:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        elif self.total is not None:
            parts.append("ETA ?")  # nothing measured yet: no guess is better than a wrong one
        else:
            parts.append(f"{format_duration(elapsed)} elapsed")
        if self.note:
            parts.append(self.note)
        return " ".join(parts)

    def _emit(self, now: float) -> None:
        self._last_written = now
        self._last_line_count = self.done
        self.write(self.line(now))


def _rate(per_s: float, unit: str) -> str:
    if per_s >= 1 or per_s == 0:
        return f"{per_s:.1f} {unit}/s"
    return f"{1 / per_s:.1f} s/{unit}"  # slow steps read better as seconds per step
