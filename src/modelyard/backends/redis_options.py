"""Timeouts and retries of every Redis client modelyard opens (online store, cache).

redis-py's defaults suit a batch job, not a request path: a 5 s read timeout retried
10 times means a Redis that drops packets holds a request for almost a minute. Here a
connect gives up after ``CONNECT_TIMEOUT_S``, a reply after ``READ_TIMEOUT_S``, and only
a broken connection (a Redis restart left it dead in the pool) is retried, once, on a
new connection; a timeout is not retried, so a hang costs one read timeout.

Query parameters of the URL win over these defaults (redis-py parses them), e.g.
``redis://host:6379/0?socket_timeout=5&socket_connect_timeout=2``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONNECT_TIMEOUT_S", "READ_TIMEOUT_S", "client_options"]

CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0


def client_options(
    *, asyncio: bool = False, read_timeout_s: float = READ_TIMEOUT_S
) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url`` (``asyncio=True``: for redis.asyncio)."""
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry

        retry: Any = AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    else:
        from redis.retry import Retry

        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": read_timeout_s,
        "socket_keepalive": True,
        "retry": retry,
    }
