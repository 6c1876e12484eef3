"""The checks of bench/serving_servers.py that time nothing: the same answers from both
servers, how long each holds a misbehaving connection, what a concurrency cap does, lifespan
and SIGTERM handling, two workers; and their part of the report.

Separate so that serving_servers.py stays the timed benchmark (and the server processes'
app module), each file under the style guide's 600 lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _servers_common import BENCH, EVENTS_ENV, NAMES, PATHS, command, server_env


# -- the same answers from both servers ------------------------------------------------------------
def raw_request(port: int, data: bytes, timeout: float = 5.0) -> dict[str, Any]:
    """Send ``data`` as is on a new connection; status, error code and the headers that matter."""
    import http.client
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            body = resp.read()
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            return {"status": type(exc).__name__}
    try:
        code = json.loads(body).get("code") if body else None
    except (ValueError, AttributeError):
        code = None
    return {
        "status": resp.status,
        "code": code,
        "content_type": resp.getheader("content-type"),
        "request_id": resp.getheader("x-request-id"),
        "server_header": resp.getheader("server"),
    }


def parity_cases(body: bytes) -> dict[str, bytes]:
    path = PATHS["modelyard"]

    def post(data: bytes, *headers: str) -> bytes:
        head = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
        head += headers
        if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
            head.append(f"Content-Length: {len(data)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + data

    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    bad_type = json.dumps({n: "x" for n in NAMES}).encode()
    return {
        "valid": post(body),
        "client request id": post(body, "X-Request-Id: client-chosen-1"),
        "invalid JSON": post(b"{not json"),
        "wrong type": post(bad_type),
        "missing fields": post(b"{}"),
        "chunked body": post(chunked, "Transfer-Encoding: chunked"),
        "11 MiB declared": post(b"", "Content-Length: 11534336"),
        "unknown route": b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "wrong method": f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(),
        "metrics": b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    }


def parity(live: dict, body: bytes) -> dict[str, Any]:
    servers = [s for a, s in live if a == "modelyard"]
    seen = {
        case: {s: raw_request(live[("modelyard", s)][0], data) for s in servers}
        for case, data in parity_cases(body).items()
    }
    differ = {}
    for case, by_server in seen.items():
        for s, got in by_server.items():
            ref = by_server[servers[0]]
            keys = [k for k in got if k not in ("request_id", "server_header")]
            keys += ["request_id"] if case == "client request id" else []
            diff = {k: [ref.get(k), got.get(k)] for k in keys if got.get(k) != ref.get(k)}
            if diff:
                differ.setdefault(case, {})[s] = diff
    headers = {s: seen["valid"][s]["server_header"] for s in servers}
    return {"answers": seen, "differences_from_" + servers[0]: differ, "server_header": headers}


# -- HTTP hardening: how long a server holds a misbehaving connection --------------------------
HOLDS = ("no_bytes", "partial_headers", "trickle_headers", "partial_body", "idle_keepalive")


def hold(port: int, kind: str, cap: float, body: bytes) -> dict[str, Any]:
    """Open a connection that misbehaves as ``kind``; when (if before ``cap`` s) the server
    closes it, and the first line of whatever it answered."""
    import http.client
    import socket
    import time

    line = f"POST {PATHS['modelyard']} HTTP/1.1\r\nHost: localhost\r\n"
    t0 = time.monotonic()
    if kind == "idle_keepalive":  # one whole request, then nothing
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=cap)
        conn.request("POST", PATHS["modelyard"], body, {"content-type": "application/json"})
        conn.getresponse().read()
        sock, t0 = conn.sock, time.monotonic()
    else:
        sock = socket.create_connection(("127.0.0.1", port), timeout=cap)
        if kind in ("partial_headers", "trickle_headers"):
            sock.sendall(line.encode())
        elif kind == "partial_body":
            sock.sendall(
                f"{line}Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{{".encode()
            )
    answered, sent = None, 0
    try:
        while (left := cap - (time.monotonic() - t0)) > 0:
            sock.settimeout(min(left, 2.0) if kind == "trickle_headers" else left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if kind == "trickle_headers":  # one more header line every 2 s
                    sent += 1
                    sock.sendall(f"X-Pad-{sent}: 1\r\n".encode())
                continue
            if not data:
                return {"closed_after_s": round(time.monotonic() - t0, 1), "answered": answered}
            answered = answered or data.split(b"\r\n", 1)[0].decode(errors="replace")
    except (ConnectionResetError, BrokenPipeError) as exc:
        return {"closed_after_s": round(time.monotonic() - t0, 1), "answered": type(exc).__name__}
    finally:
        sock.close()
    return {"closed_after_s": None, "answered": answered, "held_for_s": cap}


def holds(ports: dict[str, int], cap: float, body: bytes) -> dict[str, dict[str, Any]]:
    """Every kind against every server at once, so the whole check takes ``cap`` seconds."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(ports) * len(HOLDS)) as pool:
        futures = {
            (s, k): pool.submit(hold, port, k, cap, body)
            for s, port in ports.items()
            for k in HOLDS
        }
    return {s: {k: futures[(s, k)].result() for k in HOLDS} for s in ports}


def capped(port: int, n: int = 4, sleep_s: float = 1.0) -> list[dict[str, Any]]:
    """``n`` concurrent requests that each take ``sleep_s``: statuses and times under a cap."""
    import http.client
    import time
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> dict[str, Any]:
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", f"/sleep?s={sleep_s}")
            status: int | str = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
        finally:
            conn.close()
        return {"status": status, "seconds": round(time.monotonic() - t0, 2)}

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


# -- lifecycle: lifespan, SIGTERM with a request in flight, two workers -------------------------
GET_READYZ = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n"
GET_SLEEP = b"GET /sleep?s=2 HTTP/1.1\r\nHost: localhost\r\n\r\n"


def get(port: int, path: str) -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def lifecycle(server: str, app: str, tmp: Path, site: Path, *extra: str) -> dict[str, Any]:
    import signal
    import threading
    import time

    from _procs import Unavailable, free_port, running

    port = free_port()
    events = tmp / f"events-{server}-{app}-{len(extra)}.txt"
    env = server_env(tmp, site, **{EVENTS_ENV: str(events)})
    log = tmp / f"lifecycle-{server}-{app}-{len(extra)}.log"
    out: dict[str, Any] = {}
    try:
        with running(
            command(server, app, port, tmp, *extra), port, "/readyz", log, env=env, cwd=BENCH
        ) as proc:
            out["startup"] = _events(events)
            if extra and app == "bare":  # two workers: does each answer? (bare says its pid)
                pids = {json.loads(get(port, "/pid"))["pid"] for _ in range(40)}
                out["answering_worker_pids"] = len(pids)
            inflight: dict[str, Any] = {}

            def slow() -> None:
                t0 = time.monotonic()
                inflight["status"] = raw_request(port, GET_SLEEP, timeout=40)["status"]
                inflight["seconds"] = round(time.monotonic() - t0, 2)

            thread = threading.Thread(target=slow)
            if app == "bare":
                thread.start()
                time.sleep(0.5)
            t0 = time.monotonic()
            os.kill(proc.pid, signal.SIGTERM)  # the main process only, as a process manager does
            time.sleep(0.3)
            try:
                out["new_request_after_sigterm"] = raw_request(port, GET_READYZ, timeout=3)[
                    "status"
                ]
            except OSError as exc:
                out["new_request_after_sigterm"] = type(exc).__name__
            try:
                proc.wait(timeout=45)
                out["exit_code"] = proc.returncode
                out["exited_after_s"] = round(time.monotonic() - t0, 2)
            except subprocess.TimeoutExpired:
                out["exit_code"] = "still running after 45 s"
            if app == "bare":
                thread.join()
                out["in_flight_request"] = inflight
            out["events"] = _events(events)
    except Unavailable as exc:
        out["failed"] = str(exc)
    return out


def _events(path: Path) -> dict[str, int]:
    lines = path.read_text().split() if path.exists() else []
    kinds = lines[1::2]
    return {k: kinds.count(k) for k in sorted(set(kinds))} | {"pids": len(set(lines[::2]))}


# -- running the checks (from serving_servers.main) ----------------------------------------------
def checks(
    stack: contextlib.ExitStack,
    live: dict,
    tmp: Path,
    site: Path,
    body: bytes,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The hold checks on the timed modelyard servers, plus granian with a 5 s header timeout."""
    from _procs import free_port, running

    ports = {s: live[(a, s)][0] for a, s in live if a == "modelyard"}
    port = free_port()
    cmd = command("granian", "modelyard", port, tmp, "--http1-header-read-timeout", "5000")
    log = tmp / "granian-header-timeout.log"
    stack.enter_context(running(cmd, port, "/readyz", log, env=server_env(tmp, site), cwd=BENCH))
    ports["granian --http1-header-read-timeout 5000"] = port
    print(f"hold checks: {args.hold_seconds:g} s", file=sys.stderr)
    return holds(ports, args.hold_seconds, body)


def lifecycle_checks(tmp: Path, site: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from _procs import free_port, running

    print("lifecycle checks", file=sys.stderr)
    life = {}
    for server in ("uvicorn", "granian"):
        for app in ("modelyard", "bare"):
            life[f"{app}/{server}"] = lifecycle(server, app, tmp, site)
    for app in ("modelyard", "bare"):
        life[f"{app}/granian --workers 2"] = lifecycle("granian", app, tmp, site, "--workers", "2")
    capped_runs = {}
    for server, extra in (("uvicorn", ("2",)), ("granian", ("--backpressure", "2"))):
        port = free_port()
        cmd = command(server, "bare", port, tmp, *extra)
        log = tmp / f"capped-{server}.log"
        with running(cmd, port, "/readyz", log, env=server_env(tmp, site), cwd=BENCH):
            label = (
                "uvicorn limit_concurrency=2" if server == "uvicorn" else "granian --backpressure 2"
            )
            capped_runs[label] = capped(port)
    return life, capped_runs


# -- report ----------------------------------------------------------------------------------------
def checks_report(out: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "holds" in out:
        cap = out["settings"]["hold_seconds"]
        lines += [
            "",
            f"Misbehaving connections (closed after s; 'open' = still open at {cap:g} s):",
            "",
        ]
        lines += ["| server | " + " | ".join(HOLDS) + " |", "|---" * (len(HOLDS) + 1) + "|"]
        for server, kinds in out["holds"].items():
            cells = []
            for k in HOLDS:
                h = kinds[k]
                cell = "open" if h["closed_after_s"] is None else f"{h['closed_after_s']:g}"
                cells.append(cell + (f" ({h['answered']})" if h.get("answered") else ""))
            lines.append(f"| {server} | " + " | ".join(cells) + " |")
    if "parity" in out:
        diffs = next(v for k, v in out["parity"].items() if k.startswith("differences"))
        lines += [
            "",
            f"Same requests, {len(out['parity']['answers'])} cases (status, error code, "
            "content type, request id, server header); where the servers differ:",
            "",
        ]
        lines.append(f"- the Server header: {out['parity']['server_header']}")
        for case, by_server in diffs.items():
            for server, d in by_server.items():
                what = "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in d.items())
                lines.append(f"- {case}, {server}: {what}")
    if "lifecycle" in out:
        lines += [
            "",
            "| app / server | lifespan start, stop | request in flight at SIGTERM | exit code "
            "(s after SIGTERM) | new request after SIGTERM |",
            "|---|---|---|---|---|",
        ]
        for key, v in out["lifecycle"].items():
            ev = v.get("events", {})
            life = (
                f"{ev.get('lifespan.startup.complete', 0)}, "
                f"{ev.get('lifespan.shutdown.complete', 0)} ({ev.get('pids', 0)} pids)"
            )
            fl = v.get("in_flight_request")
            flight = "-" if fl is None else f"{fl['status']} after {fl['seconds']} s"
            lines.append(
                f"| {key} | {life} | {flight} | {v.get('exit_code')} "
                f"({v.get('exited_after_s')}) | {v.get('new_request_after_sigterm')} |"
            )
    for label, reqs in out.get("capped", {}).items():
        got = ", ".join(f"{r['status']} in {r['seconds']} s" for r in reqs)
        lines.append(f"\n{label}, 4 concurrent 1 s requests: {got}.")
    return lines
