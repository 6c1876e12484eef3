"""The HTTP client of the team server: one connection pool, the key, retries, errors.

A call that cannot have reached the server (the connection was refused or timed out
opening) is retried with backoff whatever it is; a call that may have reached it (the
connection broke mid-answer, or a 502/503/504 from a load balancer between instances) is
retried only when it is idempotent (reads, upserts, content-addressed uploads), so a
retry never stores something twice. The server's errors come back as the same modelyard
exception (``NotFoundError``, ``ForbiddenError`` …) with the server's message.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from modelyard import errors
from modelyard._files import atomic_path
from modelyard._redact import redact
from modelyard.errors import BackendUnavailableError, IntegrityError, ModelyardError
from modelyard.remote._codec import decode, encode

API = "/api/modelyard/v1"
# Then give up: about 8 s covers an instance restarting behind its load balancer.
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
CHUNK = 1 << 20
_RETRY_STATUS = (502, 503, 504)


def _error(status: int, body: bytes, url: str) -> ModelyardError:
    try:
        data = orjson.loads(body)
        message, kind = str(data["message"]), str(data.get("type", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:200]
        return BackendUnavailableError(f"the team server at {url} answered {status}: {text}")
    found = getattr(errors, kind, None)
    if isinstance(found, type) and issubclass(found, ModelyardError):
        try:
            return found(message)
        except TypeError:  # an error whose constructor takes more than a message
            pass
    return ModelyardError(message)


class TeamClient:
    """Calls to ``modelyard server`` at ``url`` with API key ``key`` (may be empty)."""

    def __init__(self, url: str, key: str = "", *, timeout_s: float = 60.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TeamClient({redact(self.url)!r})"

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, idempotent: bool, **kw: Any) -> Any:
        import httpx

        for attempt, pause in enumerate((*BACKOFF_S, None)):
            try:
                answer = self._http.request(method, path, **kw)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure: Exception = exc  # never reached the server: safe to send again
            except httpx.TransportError as exc:
                if not idempotent:
                    raise self._unreachable(exc) from None
                failure = exc
            else:
                if answer.status_code in _RETRY_STATUS and idempotent and pause is not None:
                    failure = RuntimeError(f"HTTP {answer.status_code}")
                else:
                    return answer
            if pause is None:
                raise self._unreachable(failure) from None
            time.sleep(pause * (1 + 0.2 * attempt))
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> BackendUnavailableError:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return BackendUnavailableError(
            f"cannot reach the team server at {redact(self.url)}: {reason}; check that "
            "'modelyard server' runs there and that metadata.url is right"
        )

    def _check(self, answer: Any) -> Any:
        if answer.status_code >= 400:
            raise _error(answer.status_code, answer.content, redact(self.url))
        return answer

    # -- calls -----------------------------------------------------------------------------
    def call(
        self, target: str, method: str, *args: Any, idempotent: bool = False, **kwargs: Any
    ) -> Any:
        body = orjson.dumps({"args": encode(list(args)), "kwargs": encode(kwargs)})
        answer = self._send(
            "POST",
            f"{API}/call/{target}/{method}",
            idempotent=idempotent,
            content=body,
            headers={"Content-Type": "application/json"},
        )
        return decode(orjson.loads(self._check(answer).content)["result"])

    # -- artifacts, by digest --------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        answer = self._send("HEAD", f"{API}/artifacts/{digest}", idempotent=True)
        if answer.status_code == 404:
            return False
        self._check(answer)
        return True

    def put_blob(self, digest: str, path: Path) -> None:
        """Upload a file; the server checks it against ``digest`` before keeping it."""

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        for attempt in range(2):  # a stream cannot be replayed by _send: retry here
            try:
                answer = self._send(
                    "PUT", f"{API}/artifacts/{digest}", idempotent=False, content=chunks()
                )
                self._check(answer)
                return
            except BackendUnavailableError:
                if attempt:
                    raise

    def get_blob(self, digest: str, dest: Path) -> None:
        """Download to ``dest`` atomically, checking the digest as the bytes arrive."""
        for pause in (*BACKOFF_S[:2], None):
            try:
                with self._stream(digest) as answer, atomic_path(dest) as tmp:
                    h = hashlib.sha256()
                    with open(tmp, "wb") as out:
                        for chunk in answer.iter_bytes(CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                    if "sha256:" + h.hexdigest() != digest:
                        raise IntegrityError(
                            f"artifact {digest} from the team server at {redact(self.url)} "
                            "does not match its digest; the server's copy is damaged"
                        )
                return
            except BackendUnavailableError:
                if pause is None:
                    raise
                time.sleep(pause)

    @contextmanager
    def _stream(self, digest: str) -> Iterator[Any]:
        import httpx

        try:
            with self._http.stream("GET", f"{API}/artifacts/{digest}") as answer:
                if answer.status_code >= 400:
                    answer.read()
                    self._check(answer)
                yield answer
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
