"""The floor for bench/featurestore.py's feature server: the least a hand-written server does
to answer ``POST /v1/features/{service}`` from the same SQLite online table.

One pure ASGI callable on the same uvicorn as ``modelyard features serve`` (uvloop,
httptools, access log off): the body parsed with orjson (``{"entities": {"driver_id":
[...]}}``), each key encoded as modelyard stores it (the JSON list of the key's values),
one ``SELECT k, ts, v ... WHERE k IN (...)`` on a connection opened once, every payload
decoded, the ttl judged per row, and the answer written with orjson in the feature
server's layout (per name: values, statuses, event times as epoch microseconds; no ISO
formatting). No validation, auth, metrics, logging or request ids.

    python bench/_bare_features_app.py --db online.db --table T --features f0,f1 --port 8101
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import time
from typing import Any

import orjson

JSON = [(b"content-type", b"application/json")]


def make_app(db: str, table: str, features: list[str], ttl_days: float) -> Any:
    conn = sqlite3.connect(db, check_same_thread=False)
    ttl_us = int(ttl_days * 86_400 * 1_000_000)

    def answer(body: bytes) -> bytes:
        ids = orjson.loads(body)["entities"]["driver_id"]
        keys = [orjson.dumps([i]) for i in ids]
        marks = ",".join("?" * len(keys))
        found = {
            k: (ts, v)
            for k, ts, v in conn.execute(f"SELECT k, ts, v FROM {table} WHERE k IN ({marks})", keys)
        }
        now = int(time.time() * 1_000_000)
        columns: list[list[Any]] = [[] for _ in features]
        statuses: list[str] = []
        times: list[int | None] = []
        for key in keys:
            hit = found.get(key)
            if hit is None or now - hit[0] >= ttl_us:
                statuses.append("missing" if hit is None else "expired")
                times.append(None if hit is None else hit[0])
                for column in columns:
                    column.append(None)
                continue
            statuses.append("present")
            times.append(hit[0])
            for column, value in zip(columns, orjson.loads(hit[1]), strict=True):
                column.append(value)
        results = [{"values": ids, "statuses": ["present"] * len(ids), "event_timestamps": None}]
        results += [
            {"values": column, "statuses": statuses, "event_timestamps": times}
            for column in columns
        ]
        return orjson.dumps({"features": ["driver_id", *features], "results": results})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            status = 200 if scope["path"] == "/healthz" else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        payload = answer(body)
        headers = [*JSON, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--ttl-days", type=float, default=30)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = make_app(args.db, args.table, args.features.split(","), args.ttl_days)
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
