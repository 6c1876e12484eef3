"""Redis online store: one hash per view (field = key, value = event time + values).

The "keep the newer row" rule must hold with many writers, so writes go through a small
Lua script that compares event times inside Redis, atomically, per key.

Every call has a connect and a read timeout (``backends/redis_options.py``); a Redis that is
down or does not answer in time raises ``OnlineStoreUnavailableError`` (503), and the
client reconnects by itself once Redis is back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from modelyard._redact import redact
from modelyard.backends.online import OnlineRow
from modelyard.backends.redis_options import client_options
from modelyard.errors import ConfigError, OnlineStoreUnavailableError

T = TypeVar("T")

_TS = struct.Struct(">q")  # 8-byte big-endian event time, then the encoded values

# KEYS[1] = the view's hash; ARGV = key1, ts1, value1, key2, ts2, value2, ...
_WRITE = """
for i = 1, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if (not old) or (struct.unpack('>i8', old) <= tonumber(ARGV[i + 1])) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 0
"""


class RedisOnlineStore:
    def __init__(self, url: str, *, prefix: str = "modelyard:fv:") -> None:
        self.url = url
        self.prefix = prefix
        self._client: Any = None
        self._script: Any = None

    def __repr__(self) -> str:
        return f"RedisOnlineStore({redact(self.url)!r})"

    def open(self) -> None:
        if self._client is not None:
            return
        try:
            import redis
        except ImportError:
            raise ConfigError(
                "online.url is a Redis URL but redis is not installed; "
                "run: pip install 'modelyard[redis]'"
            ) from None
        try:
            client = redis.Redis.from_url(self.url, **client_options())
        except ValueError as exc:  # a port or query value redis-py cannot read
            raise self._bad_url(exc) from None
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise self._unavailable(exc) from None
        except (TypeError, ValueError) as exc:  # a query parameter redis-py does not know
            client.close()
            raise self._bad_url(exc) from None
        self._client = client
        self._script = client.register_script(_WRITE)

    def _bad_url(self, exc: Exception) -> ConfigError:
        return ConfigError(
            f"online store URL {redact(self.url)} is not one Redis accepts: "
            f"{redact(str(exc))}; fix online.url (query parameters are redis-py's "
            "connection options, e.g. ?socket_timeout=5)"
        )

    def _unavailable(self, exc: Exception) -> OnlineStoreUnavailableError:
        return OnlineStoreUnavailableError(
            f"cannot reach the online store at {redact(self.url)}: {redact(str(exc))}; "
            "check that Redis is running and online.url is right"
        )

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one Redis call; a connection error or timeout becomes a 503 error."""
        import redis

        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise self._unavailable(exc) from None

    def ping(self) -> None:
        """Raise ``OnlineStoreUnavailableError`` unless Redis answers within its timeouts."""
        self._call(self.client.ping)

    @property
    def client(self) -> Any:
        if self._client is None:
            self.open()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def write(self, view: str, rows: Sequence[OnlineRow]) -> None:
        if not rows:
            return
        client = self.client
        # One script call per batch keeps the whole batch's compare-and-set atomic.
        for start in range(0, len(rows), 1000):
            args: list[Any] = []
            for key, ts, values in rows[start : start + 1000]:
                args += [key, ts, _TS.pack(ts) + values]
            write = partial(self._script, keys=[self.prefix + view], args=args, client=client)
            self._call(write)

    def read(self, view: str, keys: Sequence[bytes]) -> list[tuple[int, bytes] | None]:
        raw = self._call(partial(self.client.hmget, self.prefix + view, list(keys)))
        return [None if r is None else (_TS.unpack_from(r)[0], r[8:]) for r in raw]

    def drop(self, view: str) -> None:
        self._call(partial(self.client.delete, self.prefix + view))
