"""Prediction cache, per row: key = model name + version + the row's validated values.

Two stores behind one small protocol: an in-process LRU with a TTL (the default) and
Redis, shared by every replica. A new model version never reads an old version's
entries because the version is part of the key. The LRU is written here because the
standard library's ``functools.lru_cache`` has no TTL and no per-entry API.

The Redis cache fails open: a Redis that is down or slower than its timeouts
(``backends/redis_options.py``; the read timeout is shorter here, a cache must not cost more
than the model) makes every row a miss and every write a no-op, so predictions are
computed without the cache. Each skipped call is reported to ``on_error`` (the server
counts them in ``modelyard_cache_errors_total``), a warning is logged once per outage,
and a breaker (``_breaker.py``) skips Redis for a second after a failure, then uses it
again as soon as it answers.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from modelyard._redact import redact
from modelyard.backends.redis_options import client_options
from modelyard.errors import ConfigError
from modelyard.serving._breaker import Breaker

CACHE_READ_TIMEOUT_S = 1.0

OnCacheError = Callable[[str], None]
"""Told the operation (``get`` or ``put``) of each cache call that did not reach Redis."""


class PredictionCache(Protocol):
    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...

    async def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None: ...

    async def close(self) -> None: ...


def row_keys(name: str, version: int, columns: dict[str, Any], rows: int) -> list[bytes]:
    """One key per input row; values are JSON-canonical so 1 and 1.0 stay distinct types."""
    prefix = f"modelyard:pred:{name}:{version}:".encode()
    values = list(columns.values())
    keys = []
    for i in range(rows):
        raw = orjson.dumps([v[i] for v in values], option=orjson.OPT_SERIALIZE_NUMPY)
        keys.append(prefix + hashlib.blake2b(raw, digest_size=16).hexdigest().encode())
    return keys


class LocalCache:
    """LRU of at most ``max_entries`` rows, each kept ``ttl_s`` seconds."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._data: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        now = time.monotonic()
        out: list[bytes | None] = []
        for key in keys:
            hit = self._data.get(key)
            if hit is None or hit[0] < now:
                if hit is not None:
                    del self._data[key]
                out.append(None)
                continue
            self._data.move_to_end(key)
            out.append(hit[1])
        return out

    async def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        expires = time.monotonic() + self.ttl_s
        for key, value in items:
            self._data[key] = (expires, value)
            self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Entries in Redis with ``SET … PX ttl``, shared by every replica of the server."""

    def __init__(
        self, url: str, ttl_s: float, *, model: str = "", on_error: OnCacheError | None = None
    ) -> None:
        self.url = url
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.on_error = on_error
        self.breaker = Breaker("prediction cache", model=model)
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise ConfigError(
                    "the Redis prediction cache needs the redis package; "
                    "pip install 'modelyard[redis]'"
                ) from None
            self._client = aioredis.Redis.from_url(self.url, **_options(self.url))
        return self._client

    def _skipped(self, operation: str, error: BaseException | None = None) -> None:
        if error is not None:
            self.breaker.failed(redact(f"{type(error).__name__}: {error}"))
        if self.on_error is not None:
            self.on_error(operation)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        from redis.exceptions import ConnectionError, TimeoutError

        if self.breaker.allow():
            try:
                found: list[bytes | None] = await self._redis().mget(list(keys))
            except (ConnectionError, TimeoutError) as exc:
                self._skipped("get", exc)
            except BaseException:  # e.g. the request's own timeout cancelled this call
                self.breaker.abandoned()
                raise
            else:
                self.breaker.succeeded()
                return found
        else:
            self._skipped("get")
        return [None] * len(keys)

    async def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        from redis.exceptions import ConnectionError, TimeoutError

        if not self.breaker.allow():
            self._skipped("put")
            return
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(key, value, px=self.ttl_ms)
                await pipe.execute()
        except (ConnectionError, TimeoutError) as exc:
            self._skipped("put", exc)
        except BaseException:
            self.breaker.abandoned()
            raise
        else:
            self.breaker.succeeded()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _options(url: str) -> dict[str, Any]:
    options = client_options(asyncio=True, read_timeout_s=CACHE_READ_TIMEOUT_S)
    if url.startswith("unix://"):
        # No TCP keepalive on a Unix socket: redis-py's socket connection refuses the option.
        del options["socket_keepalive"]
    return options


def _check_redis_url(url: str) -> None:
    """Refuse, before serving, a URL that redis-py would refuse at every request (an
    unknown query parameter, a bad port or value): the cache fails open only on a Redis
    that is down or slow, so a bad URL answered 500 to every prediction. Building a
    connection object does no I/O."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        return  # RedisCache names the missing extra on first use
    try:
        pool: Any = aioredis.ConnectionPool.from_url(url, **_options(url))
        pool.make_connection()
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"cache_url {redact(url)} is not one Redis accepts: {redact(str(exc))}; fix "
            "--cache-url / cache_url (query parameters are redis-py's connection options)"
        ) from None


def make_cache(
    kind: str,
    *,
    url: str | None,
    max_entries: int,
    ttl_s: float,
    model: str = "",
    on_error: OnCacheError | None = None,
) -> PredictionCache:
    if kind == "local":
        return LocalCache(max_entries, ttl_s)
    if kind == "redis":
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            shown = redact(url) if url else url
            raise ConfigError(f"cache 'redis' needs cache_url=redis://host:port/db (got {shown!r})")
        _check_redis_url(url)
        return RedisCache(url, ttl_s, model=model, on_error=on_error)
    raise ConfigError(f"cache {kind!r} is not known; use 'off', 'local' or 'redis'")
