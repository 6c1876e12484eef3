"""Redis online store: one hash per view (field = key, value = event time + values).

The "keep the newer row" rule must hold with many writers, so writes go through a small
Lua script that compares event times inside Redis, atomically, per key.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from modelyard._redact import redact
from modelyard.backends.online import OnlineRow
from modelyard.errors import BackendUnavailableError, ConfigError

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
        client = redis.Redis.from_url(self.url, socket_connect_timeout=3)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise BackendUnavailableError(
                f"cannot reach the online store at {redact(self.url)}: {redact(str(exc))}; "
                "check that Redis is running and online.url is right"
            ) from None
        self._client = client
        self._script = client.register_script(_WRITE)

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
            self._script(keys=[self.prefix + view], args=args, client=client)

    def read(self, view: str, keys: Sequence[bytes]) -> list[tuple[int, bytes] | None]:
        raw = self.client.hmget(self.prefix + view, list(keys))
        return [None if r is None else (_TS.unpack_from(r)[0], r[8:]) for r in raw]

    def drop(self, view: str) -> None:
        self.client.delete(self.prefix + view)
