"""Time: UTC microseconds inside, aware datetimes outside, one rule for naive input.

- Stored timestamps are integer microseconds since the epoch (UTC): ``now_us``, and the
  exact conversions ``to_us`` / ``to_datetime`` (integer arithmetic: ``timestamp() * 1e6``
  reads a naive datetime in the machine's local zone, and rounds far from 1970).
- Durations are written ``30s``, ``15m``, ``1h``, ``2d``, ``1w``: ``parse_duration``.
- A datetime without a time zone is refused everywhere with one line that names the
  value, unless the caller passes the documented explicit option (``assume_utc=True`` in
  Python, ``--assume-utc`` on the command line), which reads it as UTC: ``aware`` and
  ``parse_time``. A bare day (``2026-11-24``) is that day from 00:00 UTC: modelyard's
  calendar (cron schedules, log partitions, job dates) is UTC.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import overload

from modelyard.errors import InvalidInputError

__all__ = [
    "EPOCH",
    "aware",
    "now_us",
    "parse_duration",
    "parse_time",
    "to_datetime",
    "to_us",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def now_us() -> int:
    """Now, as integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def to_us(value: datetime, what: str = "time") -> int:
    """An aware datetime as integer microseconds since the epoch (naive ones are refused)."""
    return (aware(value, what) - EPOCH) // _US


@overload
def to_datetime(us: int) -> datetime: ...
@overload
def to_datetime(us: None) -> None: ...
@overload
def to_datetime(us: int | None) -> datetime | None: ...
def to_datetime(us: int | None) -> datetime | None:
    """Microseconds since the epoch as an aware UTC datetime (None stays None)."""
    return None if us is None else EPOCH + timedelta(microseconds=int(us))


def aware(
    value: datetime, what: str = "time", *, assume_utc: bool = False, option: str = ""
) -> datetime:
    """``value`` in UTC. A naive ``value`` is UTC only with ``assume_utc``; else refused.

    ``option`` names the explicit option the caller offers (``"assume_utc=True"``,
    ``"--assume-utc"``), so that the message shows the way out.
    """
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if not assume_utc:
            raise _naive(
                f"{what} {value.isoformat()}", "pass an aware datetime (tzinfo=UTC)", option
            )
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(
    text: str, what: str = "time", *, assume_utc: bool = False, option: str = "--assume-utc"
) -> datetime:
    """ISO 8601 text as an aware UTC datetime (the command line's rule for every time).

    ``2026-11-24T02:00Z`` or ``…+02:00``; a bare day ``2026-11-24`` is 00:00 UTC; a time
    without a zone is refused unless ``assume_utc`` (the ``--assume-utc`` flag).
    """
    stripped = text.strip() if isinstance(text, str) else ""
    try:
        if len(stripped) == 10:
            day = date.fromisoformat(stripped)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(stripped)
    except ValueError:
        raise InvalidInputError(
            f"{what} {text!r} is not a time; write ISO 8601 with a zone, e.g. "
            "2026-11-24T02:00Z or 2026-11-24T04:00+02:00, or a day, 2026-11-24"
        ) from None
    if value.tzinfo is None and not assume_utc:
        raise _naive(f"{what} {text!r}", "add Z or +00:00 for UTC", option)
    return aware(value, what, assume_utc=True)


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*")


_LONGEST = timedelta(days=36_525)


def parse_duration(text: str, what: str = "duration", *, allow_zero: bool = False) -> timedelta:
    """``30s``, ``15m``, ``1h``, ``2d``, ``1w`` -> a positive timedelta (``0s`` if allowed).

    Raises ``InvalidInputError`` (a ``ValueError``) naming ``what`` (e.g. ``"window"``;
    empty where the caller names the field itself), the bad value and the accepted forms.
    """
    found = _DURATION.fullmatch(text) if isinstance(text, str) else None
    shown = f"{what} {text!r}" if what else repr(text)
    if found is not None and int(found.group(1)) == 0 and not allow_zero:
        raise InvalidInputError(f"{shown} is zero; give a duration above 0 such as 30s or 1h")
    if found is None:
        least = "0s, " if allow_zero else ""
        raise InvalidInputError(
            f"{shown} is not a duration; write a number and a unit: {least}30s, 15m, 1h, 2d or 1w"
        )
    try:
        span = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    except OverflowError:
        span = _LONGEST * 2
    if span > _LONGEST:  # "now minus it" would leave the calendar
        raise InvalidInputError(f"{shown} is too long; give at most 100 years")
    return span


def _naive(shown: str, remedy: str, option: str) -> InvalidInputError:
    way_out = f", or pass {option} to read it as UTC" if option else ""
    return InvalidInputError(f"{shown} has no time zone; {remedy}{way_out}")
