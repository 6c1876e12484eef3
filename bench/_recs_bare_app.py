"""The floor for bench/recommendations.py's read API: the least a hand-written server does
to answer ``GET /v1/recommendations/{user_id}?k=10`` from the rows modelyard published.

One pure ASGI callable on the same uvicorn as ``modelyard serve`` (uvloop, httptools,
access log off, the heap frozen), reading on the event loop, with no thread, breaker,
validation beyond ``int()``, auth, metrics, logging or admission:

1. the newest pointer (``recommendations/_pointers``, key ``b""``): ``SELECT v ... WHERE
   k = ?`` on one sqlite3 connection opened once, or one ``HGET`` with redis-py; the
   pointer's JSON parsed once per distinct pointer (by its bytes);
2. the user's row of the view the pointer names: one ``SELECT``/``HGET`` of the user's key
   (the popularity row only when the user has none);
3. the answer, the same JSON as modelyard's (scores as their float32's shortest text,
   ``published_at`` in UTC with ``Z``, a 32-hex-digit request id, also sent as
   ``x-request-id``), written with orjson.

    python bench/_recs_bare_app.py --online sqlite:///PATH|redis://HOST:PORT/DB --port 8101
        [--workers 2]

``--workers N``: N processes, each with its own SO_REUSEPORT socket (as ``modelyard serve
--workers``), forked after the socket options are known, all in this process group.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import sqlite3
import struct
from datetime import datetime
from typing import Any

import numpy as np
import orjson

POINTERS = "recommendations/_pointers"
POPULAR = b"\x00popular"
PREFIX = "/v1/recommendations/"
HEADERS = [(b"content-type", b"application/json")]


def _table(view: str) -> str:
    return '"fv_' + view.replace('"', '""') + '"'


def make_reader(url: str) -> Any:
    """``read(view, key) -> bytes | None``: the row's values, on this thread."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        statements: dict[str, str] = {}

        def read_sqlite(view: str, key: bytes) -> bytes | None:
            sql = statements.get(view)
            if sql is None:
                sql = statements[view] = f"SELECT v FROM {_table(view)} WHERE k = ?"
            row = conn.execute(sql, (key,)).fetchone()
            return None if row is None else bytes(row[0])

        return read_sqlite
    import redis

    client = redis.Redis.from_url(url)

    def read_redis(view: str, key: bytes) -> bytes | None:
        raw: bytes | None = client.hget("modelyard:fv:" + view, key)
        return None if raw is None else raw[8:]  # the 8-byte event time first

    return read_redis


def make_app(url: str) -> Any:
    read = make_reader(url)
    parsed: dict[bytes, tuple[str, bytes, int]] = {}  # pointer -> (view, fixed head, k)
    spare: list[str] = []

    def publication(raw: bytes) -> tuple[str, bytes, int]:
        found = parsed.get(raw)
        if found is None:
            p = json.loads(raw)
            at = datetime.fromisoformat(p["published_at"])
            head = {
                "model": p["model"],
                "night": p["night"],
                "version": p["version"],
                "published_at": at,
            }
            view = f"recommendations/{p['model']}/{p.get('edition') or p['night']}"
            found = parsed[raw] = (view, orjson.dumps(head, option=orjson.OPT_UTC_Z), p["k"])
        return found

    def request_id() -> str:
        if not spare:
            digits = os.urandom(16 * 256).hex()
            spare.extend(digits[i : i + 32] for i in range(0, len(digits), 32))
        return spare.pop()

    def answer(user: int, k: int | None) -> tuple[int, bytes, str]:
        rid = request_id()
        pointer = read(POINTERS, b"")
        if pointer is None:
            return 404, b'{"code":"not_found"}', rid
        view, head, night_k = publication(pointer)
        k = min(10, night_k) if k is None else k
        row = read(view, struct.pack(">q", user))
        fallback = row is None
        if fallback:
            row = read(view, POPULAR)
            assert row is not None
        (count,) = struct.unpack_from(">H", row)
        take = min(k, count)
        items = struct.unpack_from(f"<{take}q", row, 2)
        scores = np.frombuffer(row, dtype="<f4", count=take, offset=2 + 8 * count)
        payload = {
            "user_id": user,
            "fallback": "popularity" if fallback else False,
            "items": [{"item_id": i, "score": s} for i, s in zip(items, scores, strict=True)],
            "request_id": rid,
        }
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        # The publication's fields spliced in after user_id: {"user_id":N,<head>,...}
        cut = body.index(b",")
        return 200, body[:cut] + b"," + head[1:-1] + body[cut:], rid

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            status = 200 if path in ("/healthz", "/readyz") else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        query = scope["query_string"]
        k = int(query[2:]) if query.startswith(b"k=") else None
        status, body, rid = answer(int(path[len(PREFIX) :]), k)
        headers = [
            *HEADERS,
            (b"x-request-id", rid.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--online", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    app = make_app(args.online)
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
