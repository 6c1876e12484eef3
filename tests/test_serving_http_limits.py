"""HTTP hardening: deadlines on what clients send, a cap on connections, request ids.

Slow and silent clients are played with raw sockets against real servers: uvicorn on a
thread with the server's protocol (both of uvicorn's parsers, over a tiny app) and
``modelyard serve`` as a process. Deadlines are asserted from below only (nothing is
closed before its deadline) and with generous upper bounds, so a loaded machine cannot
make them flake.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn

import modelyard
from cli_support import run_cli
from modelyard.backends.predictions import open_prediction_log
from modelyard.errors import PayloadTooLargeError, RequestTimeoutError
from modelyard.serving import create_app
from modelyard.serving._http import read_asgi_body
from modelyard.serving._protocol import protocol_class
from modelyard.serving._request_ids import RequestIds, ids_of
from server_support import ServerProcess, running_server

PARSERS = ["httptools", "h11"]
WITHIN_S = 15.0  # the upper bound on anything the tests wait for: far above every deadline


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request with the length of its body (read as the routes read it)."""
    body = json.dumps({"size": len(await read_asgi_body(receive, None, 1 << 20, 10.0))})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


@contextmanager
def guarded(
    http: Any, *, header_timeout_s: float = 0.5, max_connections: int = 100
) -> Iterator[int]:
    """uvicorn on a thread, with the server's protocol over ``_echo``; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    protocol = protocol_class(
        header_timeout_s=header_timeout_s, max_connections=max_connections, http=http
    )
    config = uvicorn.Config(_echo, http=protocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + WITHIN_S
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.01)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join()
        listener.close()


@contextmanager
def connection(port: int) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WITHIN_S)
    try:
        yield sock
    finally:
        sock.close()


def _request(path: str = "/", body: bytes = b"", headers: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
    head += f"{headers}\r\n"
    return head.encode() + body


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (fails after WITHIN_S)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response of a kept-alive connection (with Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = _head(head)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return status, headers, body


def _parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """The one JSON response in ``raw``, all a connection sent before it closed."""
    head, _, body = raw.partition(b"\r\n\r\n")
    return (*_head(head), json.loads(body))


# --- the header deadline, on both parsers --------------------------------------------


@pytest.mark.parametrize("http", PARSERS)
def test_partial_headers_are_closed_at_the_header_timeout_not_held(http: str) -> None:
    with guarded(http, header_timeout_s=0.5) as port, connection(port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Le")  # and nothing more
        assert _read_all(sock) == b""  # closed, unanswered
        assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize("http", PARSERS)
def test_a_connection_that_sends_nothing_is_closed(http: str) -> None:
    with guarded(http, header_timeout_s=0.5) as port, connection(port) as sock:
        assert _read_all(sock) == b""


@pytest.mark.parametrize("http", PARSERS)
def test_a_kept_alive_connection_gets_the_deadline_again_for_its_next_request(
    http: str,
) -> None:
    with guarded(http, header_timeout_s=0.5) as port, connection(port) as sock:
        sock.sendall(_request(body=b"abc"))
        assert _read_response(sock)[0] == 200
        sock.sendall(b"POST / HTTP/1.1\r\nHo")  # stops the keep-alive wait, then stalls
        assert _read_all(sock) == b""


@pytest.mark.parametrize("http", PARSERS)
def test_headers_that_arrive_in_pieces_within_the_deadline_are_served(http: str) -> None:
    with guarded(http, header_timeout_s=2.0) as port, connection(port) as sock:
        request = _request(body=b"12345")
        sock.sendall(request[:10])
        time.sleep(0.1)
        sock.sendall(request[10:])
        status, _, body = _read_response(sock)
        assert status == 200 and json.loads(body) == {"size": 5}


@pytest.mark.parametrize("http", PARSERS)
def test_a_body_that_arrives_in_pieces_within_the_deadline_is_read_whole(http: str) -> None:
    with guarded(http) as port, connection(port) as sock:
        request = _request(body=b"x" * 1000)
        head = len(request) - 1000
        # The route waits for its first chunk, then for the second.
        for piece in (request[:head], request[head:-600], request[-600:]):
            sock.sendall(piece)
            time.sleep(0.2)
        status, _, body = _read_response(sock)
        assert status == 200 and json.loads(body) == {"size": 1000}


@pytest.mark.parametrize("http", PARSERS)
def test_an_idle_kept_alive_connection_follows_uvicorns_keep_alive_not_the_header_deadline(
    http: str,
) -> None:
    # uvicorn closes a silent kept-alive connection after 5 s; the header deadline (0.3 s
    # here) must not cut that short.
    with guarded(http, header_timeout_s=0.3) as port, connection(port) as sock:
        sock.sendall(_request(body=b"a"))
        assert _read_response(sock)[0] == 200
        time.sleep(1.2)  # four header deadlines
        sock.sendall(_request(body=b"bb"))
        status, _, body = _read_response(sock)
        assert status == 200 and json.loads(body) == {"size": 2}


# --- the connection cap ----------------------------------------------------------------


@pytest.mark.parametrize("http", PARSERS)
def test_connections_beyond_the_cap_get_503_json_and_are_closed(http: str) -> None:
    with guarded(http, header_timeout_s=60, max_connections=2) as port:
        with connection(port) as first, connection(port) as second:
            for held in (first, second):  # half a request each: both stay open
                held.sendall(b"POST / HTTP/1.1\r\n")
            with connection(port) as third:
                third.sendall(_request(body=b"x", headers="X-Request-ID: over-1\r\n"))
                status, headers, body = _parse(_read_all(third))  # answered, then closed
            assert status == 503 and headers["retry-after"] == "1"
            assert body["code"] == "overloaded" and "--max-connections" in body["message"]
            assert body["request_id"] == headers["x-request-id"] == "over-1"
            first.sendall(b"Host: localhost\r\nContent-Length: 0\r\n\r\n")  # held ones still work
            assert _read_response(first)[0] == 200
        # Both closed: a new connection is served once the server has seen them go.
        deadline = time.monotonic() + WITHIN_S
        while True:
            with connection(port) as fresh:
                fresh.sendall(_request(body=b"ok"))
                status = _read_response(fresh)[0]
            if status == 200:
                break
            assert time.monotonic() < deadline, "the cap still refuses after connections closed"
            time.sleep(0.05)


# --- read_asgi_body: what the fast path and the routes read bodies with ------------------


def _receiver(*messages: dict[str, Any], then_wait: bool = False) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then_wait:  # a client that stalls: nothing more comes
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return receive


@pytest.mark.anyio
async def test_read_asgi_body_joins_chunks_and_enforces_the_limit_and_the_deadline() -> None:
    chunks = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    assert await read_asgi_body(_receiver(*chunks), 4, 10, 5.0) == b"abcd"
    assert await read_asgi_body(_receiver({"type": "http.request"}), None, 10, 5.0) == b""
    with pytest.raises(PayloadTooLargeError):  # declared too large: refused before reading
        await read_asgi_body(_receiver(*chunks), 11, 10, 5.0)
    with pytest.raises(PayloadTooLargeError):  # sent too large, whatever was declared
        await read_asgi_body(_receiver(*chunks), None, 3, 5.0)
    stalled = _receiver({"type": "http.request", "body": b"ab", "more_body": True}, then_wait=True)
    with pytest.raises(RequestTimeoutError) as caught:
        await read_asgi_body(stalled, 4, 10, 0.1)
    assert caught.value.status == 408 and caught.value.code == "request_timeout"
    with pytest.raises(RequestTimeoutError):  # stalled before the first byte
        await read_asgi_body(_receiver(then_wait=True), 4, 10, 0.1)


# --- request ids ---------------------------------------------------------------------------


def test_request_ids_keep_a_new_client_id_and_never_give_one_out_twice() -> None:
    ids = RequestIds(window=4)
    assert ids.assign("trace-1") == "trace-1"
    again = ids.assign("trace-1")
    assert again.startswith("trace-1~") and again != ids.assign("trace-1")
    assert ids.assign(again) != again  # a suffixed id sent back is not a client id
    server = ids.assign(None)
    assert len(server) == 32 and int(server, 16) >= 0 and ids.assign("") != server
    assert ids.assign(server) != server  # a server id sent back is caught like any reuse
    for bad in ["a b", "x" * 129, "naïve", "a/b", "id\t"]:
        replaced = ids.assign(bad)
        assert replaced != bad and len(replaced) == 32
    assert ids.assign("x" * 128) == "x" * 128 and ids.assign("A-z_0.9:") == "A-z_0.9:"
    # The memory is bounded: an id reused long after is kept again.
    for i in range(10):
        ids.assign(f"filler-{i}")
    assert ids.assign("trace-1") == "trace-1"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with 'double' (y = 2a, a python-flavor model) at production."""
    root = tmp_path_factory.mktemp("limits") / "ws"
    with modelyard.Workspace.init(root) as ws:
        with ws.start_run("train") as run:
            logged = ws.registry.log_model(run, _double(), input_example=pd.DataFrame({"a": [1.0]}))
        ws.registry.register("double", logged)
        ws.registry.set_alias("double", "production", 1)
    return root


def _double() -> Any:
    def double(frame: pd.DataFrame) -> dict[str, Any]:  # made here: pickled by value
        return {"y": frame["a"] * 2}

    return double


@pytest.mark.anyio
async def test_two_requests_with_one_client_id_are_logged_under_two_ids(
    models: Path, tmp_path: Path
) -> None:
    log = open_prediction_log(str(tmp_path), spool=tmp_path)
    with modelyard.Workspace(models) as ws:
        app = create_app(ws.registry, ["double@production"], prediction_log=log)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                url = "/v1/models/double/predict"
                answers = [
                    await client.post(url, json={"a": a}, headers={"x-request-id": "dup-1"})
                    for a in (1.0, 2.0)
                ]
                bad = await client.post(url, json={"a": 3.0}, headers={"x-request-id": "a b"})
                ids = [r.json()["request_id"] for r in [*answers, bad]]
                assert ids[0] == "dup-1" and ids[1].startswith("dup-1~")
                assert [r.headers["x-request-id"] for r in [*answers, bad]] == ids
                assert ids[2] != "a b" and len(ids[2]) == 32
                # Feedback for each answer files its label under that answer alone.
                for rid, label in zip(ids[:2], (2.0, 4.0), strict=True):
                    r = await client.post("/v1/feedback", json={"request_id": rid, "label": label})
                    assert r.status_code == 200, r.text
            assert ids_of(app) is ids_of(app)
        logged = log.read("double").to_pandas()
    assert sorted(logged["request_id"]) == sorted(ids)
    assert dict(zip(logged["request_id"], logged["output.y"], strict=True))[ids[1]] == 4.0


# --- modelyard serve, as a process ----------------------------------------------------------


def _stall_body(
    server: ServerProcess, path: str, rid: str
) -> tuple[int, dict[str, str], Any, float]:
    with connection(server.port) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\nX-Request-ID: {rid}\r\n\r\n"
        )
        started = time.monotonic()
        sock.sendall(head.encode() + b'{"a": 1')  # 7 of the 100 bytes, then nothing
        status, headers, body = _parse(_read_all(sock))  # answered, then closed
        return status, headers, body, time.monotonic() - started


@pytest.fixture(scope="module")
def server(models: Path) -> Iterator[ServerProcess]:
    limits = ["--header-timeout", "0.5", "--body-timeout", "0.5", "--max-connections", "50"]
    with running_server(models, ["double@production"], *limits) as served:
        yield served


def test_a_stalled_body_gets_408_json_and_the_connection_is_closed(server: ServerProcess) -> None:
    for path in ["/v1/models/double/predict", "/v2/models/double/infer"]:
        status, headers, body, waited = _stall_body(server, path, f"stall-{path[2]}")
        assert status == 408 and headers["connection"] == "close"
        assert body["code"] == "request_timeout" and "--body-timeout" in body["message"]
        assert body["request_id"] == headers["x-request-id"] == f"stall-{path[2]}"
        assert waited >= 0.5
    r = httpx.post(f"{server.url}/v1/models/double/predict", json={"a": 2.0})
    assert r.status_code == 200 and r.json()["prediction"] == {"y": 4.0}


def test_the_served_process_closes_partial_headers(server: ServerProcess) -> None:
    with connection(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: te")
        assert _read_all(sock) == b""
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_client_that_stops_reading_its_answers_is_disconnected(models: Path) -> None:
    """Pipelined requests whose large answers are never read fill the socket; the server
    drops that connection at the header deadline instead of holding it (and a slot of
    --max-connections) for ever."""
    body = json.dumps([{"a": float(i)} for i in range(20000)]).encode()
    request = _request("/v1/models/double/predict", body, "Content-Type: application/json\r\n")
    limits = ["--header-timeout", "1", "--max-connections", "1"]
    with running_server(models, ["double@production"], *limits) as served:
        greedy = socket.socket()
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.connect(("127.0.0.1", served.port))
        greedy.settimeout(0.5)
        try:
            for _ in range(60):  # until the server's answers back up
                greedy.sendall(request)
        except (TimeoutError, OSError):
            pass
        dropped = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not dropped:
            try:
                httpx.get(f"{served.url}/healthz", timeout=2).raise_for_status()
                dropped = True  # the one connection slot is free again
            except httpx.HTTPError:
                time.sleep(0.5)
        greedy.close()
        assert dropped, served.tail()


@pytest.mark.slow
def test_workers_get_the_limits_too(models: Path) -> None:
    limits = ["--workers", "2", "--header-timeout", "0.5", "--body-timeout", "0.5"]
    with running_server(models, ["double@production"], *limits) as served:
        for _ in range(4):  # the kernel spreads connections over both workers
            with connection(served.port) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: te")
                assert _read_all(sock) == b""
            status, _, body, _ = _stall_body(served, "/v1/models/double/predict", "w")
            assert status == 408 and body["code"] == "request_timeout"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--header-timeout", "0"),
        ("--header-timeout", "nan"),
        ("--body-timeout", "-1"),
        ("--body-timeout", "inf"),
        ("--max-connections", "0"),
    ],
)
def test_bad_limits_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], models: Path, flag: str, value: str
) -> None:
    code, _, err = run_cli(capsys, "serve", "double@production", "-w", str(models), flag, value)
    assert code == 2
    assert err.strip().count("\n") == 0 and f"{flag} {value}" in err.replace("  ", " ")
