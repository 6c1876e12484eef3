"""Load generators for bench/serving.py, cheap on CPU because they share the server's cores.

- ``sequential``: one keep-alive ``http.client`` connection, one request at a time (c=1).
- ``concurrent``: N keep-alive connections in one asyncio loop, raw HTTP/1.1, every response
  parsed for its JSON ``version`` (the hot-swap run).
- ``open_loop``: requests sent at a fixed rate whatever the answers do, each on an idle
  keep-alive connection or a new one; latency counts from the request's scheduled time,
  so a server that falls behind shows it (no coordinated omission); also from the moment
  each was written, by status, with an optional per-request timeout.
- ``wrk``: the ``wrk`` binary with a generated Lua script (c=32): C, one thread, no Python
  in the request path; its ``done()`` hook prints the summary as one JSON line.

Every generator counts failures: a non-2xx status or a connection error.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADERS = {"content-type": "application/json"}


@dataclass
class Result:
    """What one load run saw: latencies (seconds) of the successful requests and failures."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failures(self) -> int:
        bad = sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
        return bad + sum(self.errors.values())


def sequential(
    port: int, path: str, bodies: list[bytes], requests: int, warmup: int = 200
) -> Result:
    """``warmup`` untimed then ``requests`` timed round trips, one at a time."""
    out = Result()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for i in range(warmup + requests):
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body, HEADERS)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if i >= warmup:
                out.errors[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        elapsed = time.perf_counter() - t0
        if i < warmup:
            started = time.perf_counter()
            continue
        out.statuses[resp.status] += 1
        if 200 <= resp.status < 300:
            out.latencies.append(elapsed)
    out.seconds = time.perf_counter() - started
    conn.close()
    return out


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = await reader.read()
    return status, body, headers.get("connection", "").lower() == "close"


@dataclass
class Swap(Result):
    """A concurrent run that also records, for each response, when it came and its version."""

    versions: Counter[Any] = field(default_factory=Counter)
    timeline: list[tuple[float, Any]] = field(default_factory=list)


async def _connection(
    port: int, requests: list[bytes], stop_at: float, offset: int, out: Swap, key: str
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    i = offset
    while time.perf_counter() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            status, body, close = await _read_response(reader)
            t1 = time.perf_counter()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            out.errors[type(e).__name__] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)  # a refused connect must not spin the loop
            continue
        out.statuses[status] += 1
        if 200 <= status < 300:
            out.latencies.append(t1 - t0)
            version = json.loads(body).get(key)
            out.versions[version] += 1
            out.timeline.append((t1, version))
        if close:
            assert writer is not None
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def concurrent(
    port: int,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    key: str = "version",
) -> Swap:
    """``concurrency`` closed-loop keep-alive connections for ``seconds``.

    ``key``: the JSON field of each 2xx answer counted in ``versions`` (``variant`` counts
    which variant of a split answered).
    """
    out = Swap()
    requests = [request_bytes(port, path, b) for b in bodies]

    async def main() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(
            *(_connection(port, requests, stop_at, k * 7, out, key) for k in range(concurrency))
        )

    t0 = time.perf_counter()
    asyncio.run(main())
    out.seconds = time.perf_counter() - t0
    return out


@dataclass
class OpenLoop(Result):
    """An open-loop run: ``latencies`` count from each request's scheduled time; the rest
    from the moment it was written (so a client that falls behind shows in ``lag``)."""

    served: list[float] = field(default_factory=list)  # 2xx, from the write
    refused: dict[int, list[float]] = field(default_factory=dict)  # non-2xx, from the write
    lag: list[float] = field(default_factory=list)  # write time minus scheduled time
    sent: int = 0


def open_loop(
    port: int,
    path: str,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    timeout: float | None = None,
) -> OpenLoop:
    """Send ``rate`` requests per second for ``seconds``, open loop; see the module docstring.

    ``timeout``: seconds a request may wait for its answer; one that waits longer is
    counted in ``errors["TimeoutError"]`` and its connection closed.
    """
    out = OpenLoop()
    requests = [request_bytes(port, path, b) for b in bodies]
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def one(i: int, due: float) -> None:
        writer = None
        try:
            reader, writer = (
                idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            )
            sent = time.perf_counter()
            writer.write(requests[i % len(requests)])
            out.sent += 1
            out.lag.append(sent - due)
            status, _, close = await asyncio.wait_for(_read_response(reader), timeout)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as e:
            out.errors[type(e).__name__] += 1
            if writer is not None:
                writer.close()
            return
        now = time.perf_counter()
        out.statuses[status] += 1
        if 200 <= status < 300:
            out.latencies.append(now - due)
            out.served.append(now - sent)
        else:
            out.refused.setdefault(status, []).append(now - sent)
        if close:
            writer.close()
        else:
            idle.append((reader, writer))

    async def main() -> None:
        start = time.perf_counter()
        tasks = set()
        for i in range(int(rate * seconds)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, due))
            tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        for _, writer in idle:
            writer.close()

    t0 = time.perf_counter()
    asyncio.run(main())
    out.seconds = time.perf_counter() - t0
    return out


_LUA = """
local bodies = {BODIES}
local reqs = {}
local n = 0
local i = 0
init = function(args)
  -- wrk calls init for each thread just before starting it: sleeping here staggers the
  -- threads, and so the moments their connections open.
  if STAGGER > 0 then os.execute("sleep STAGGER") end
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", "PATH", {["Content-Type"] = "application/json"}, b)
  end
  n = #reqs
end
request = function()
  i = i % n + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,' ..
    '"max_us":%.1f,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_string(b: bytes) -> str:
    text = b.decode()
    assert "]==]" not in text
    return "[==[" + text + "]==]"  # a Lua long string: no escapes needed


def wrk_available() -> str | None:
    return shutil.which("wrk")


def wrk(
    port: int,
    path: str,
    bodies: list[bytes],
    connections: int,
    seconds: float,
    threads: int = 1,
    stagger: float = 0.0,
    cpus: list[int] | None = None,
) -> dict[str, Any]:
    """Run wrk for ``seconds``; its summary plus the CPU seconds wrk itself used.

    ``cpus``: run wrk under ``taskset -c`` on those cores only.

    With ``stagger`` seconds, each of the ``threads`` opens its connections that long after
    the one before: a server whose workers share one listening socket then gets a chance to
    spread them (all at once, the first worker to wake accepts every one). wrk stops every
    thread at the same moment and divides by the time since the last thread started, so
    requests/s here divides by the mean time the threads ran instead.
    """
    exe = wrk_available()
    if exe is None:
        raise RuntimeError("wrk is not installed; run bench/setup_bentoml.sh (apt-get install wrk)")
    script = _LUA.replace("PATH", path).replace("STAGGER", f"{stagger:g}")
    script = script.replace("{BODIES}", "{" + ", ".join(_lua_string(b) for b in bodies) + "}")
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "post.lua"
        lua.write_text(script)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        pin = ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []
        proc = subprocess.run(
            [
                *pin,
                exe,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds only
                "--timeout",
                "10s",
                "-s",
                str(lua),
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        said = (proc.stderr.strip() or proc.stdout.strip())[-500:]
        raise RuntimeError(f"wrk failed ({proc.returncode}): {said}")
    summary: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    secs = summary["duration_us"] / 1e6 + (threads - 1) * stagger / 2
    summary["rps"] = summary["requests"] / secs
    summary["socket_errors"] = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    summary["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    summary["seconds"] = secs
    return summary
