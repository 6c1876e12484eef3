"""Online back end: the latest feature row per key, for serving, chosen by URL.

``sqlite:///PATH`` (default, embedded) or ``redis://host:port/db``. Both keep, per view
and key, the row with the greatest event time: a write never replaces a newer row, so
materializing twice, or pushing an old row late, cannot roll a value back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from modelyard._redact import redact
from modelyard.errors import ConfigError

__all__ = ["OnlineRow", "OnlineStore", "SCHEMES", "open_online"]

OnlineRow = tuple[bytes, int, bytes]
"""(encoded key, event time in µs since the epoch, encoded feature values)."""


class OnlineStore(Protocol):
    url: str

    def open(self) -> None: ...
    def close(self) -> None: ...

    def write(self, view: str, rows: Sequence[OnlineRow]) -> None:
        """Upsert rows; a key keeps whichever row has the greater event time."""
        ...

    def read(self, view: str, keys: Sequence[bytes]) -> list[tuple[int, bytes] | None]:
        """(event time, values) per key, in order; None where the key has no row."""
        ...

    def drop(self, view: str) -> None:
        """Remove every row of ``view``."""
        ...


def _sqlite(url: str, *, create: bool) -> OnlineStore:
    from modelyard.backends.online.sqlite import SqliteOnlineStore

    return SqliteOnlineStore(url, create=create)


def _redis(url: str, *, create: bool) -> OnlineStore:
    # A Redis database holds a store without being created; nothing to refuse.
    from modelyard.backends.online.redis import RedisOnlineStore

    return RedisOnlineStore(url)


SCHEMES: dict[str, Callable[..., OnlineStore]] = {"sqlite": _sqlite, "redis": _redis}


def open_online(url: str, *, create: bool = True) -> OnlineStore:
    """Build (not yet connect) the online store for ``url``.

    ``create=False``: a SQLite file that does not exist is created by the first write
    only; opening refuses one whose folder is missing (``ConfigError``), and reading
    feature values from it raises ``OnlineStoreMissingError`` (a wrong path would
    otherwise answer "missing" for every key).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    factory = SCHEMES.get(scheme)
    if factory is None:
        raise ConfigError(
            f"online URL {redact(url)!r} has unknown scheme {scheme!r}; "
            f"use one of: {', '.join(s + '://' for s in SCHEMES)}"
        )
    return factory(url, create=create)
