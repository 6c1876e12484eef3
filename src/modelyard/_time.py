"""Timestamps: stored as integer microseconds since the epoch, shown as aware UTC datetimes."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta


def now_us() -> int:
    return time.time_ns() // 1000


def to_datetime(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=UTC)


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """``30s``, ``10m``, ``1h``, ``1d``, ``2w`` -> a positive timedelta.

    Raises ``InvalidInputError`` naming ``what`` (e.g. ``"window"``) and the accepted forms.
    """
    from modelyard.errors import InvalidInputError

    found = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text if isinstance(text, str) else "")
    if found is None or int(found.group(1)) == 0:
        raise InvalidInputError(
            f"{what} {text!r} is not a duration; write a number and a unit: 30s, 10m, 1h, 1d or 2w"
        )
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
