"""Server processes for the benchmarks: start on a free port, wait until ready, stop them
and every descendant (also those that left the process group), and count their CPU time."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import REPO

HEADERS = {"content-type": "application/json"}


class Unavailable(Exception):
    """A server or a feature the benchmark needs is not there; the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats() -> dict[int, tuple[int, str, int, int]]:
    """pid -> (ppid, state, start time, CPU ticks) of every process, from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            f = stat[stat.rfind(")") + 2 :].split()
            out[int(entry)] = (int(f[1]), f[0], int(f[19]), int(f[11]) + int(f[12]))
    return out


def tree(pid: int) -> dict[int, tuple[int, int]]:
    """``pid`` and its descendants, even those in a session of their own (BentoML's workers
    call setsid): pid -> (start time, CPU ticks)."""
    stats = _stats()
    found, todo = {}, [pid]
    while todo:
        p = todo.pop()
        if p in stats and stats[p][1] != "Z":
            found[p] = (stats[p][2], stats[p][3])
            todo += [c for c, s in stats.items() if s[0] == p]
    return found


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``pid`` and of each live descendant, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    return {p: t / tick for p, (_, t) in tree(pid).items()}


def settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until ``pid`` and its descendants use under 5% of a core for 0.5 s: a server
    that answers its health check may still be starting other workers."""
    deadline = time.monotonic() + timeout
    before = sum(tree_cpu_seconds(pid).values())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(tree_cpu_seconds(pid).values())
        if now - before < 0.025:
            return
        before = now


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@contextmanager
def running(
    cmd: list[str],
    port: int,
    health: str,
    log: Path,
    *,
    env: dict[str, str],
    cwd: Path = REPO,
    ready_s: float = 180.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in its own process group, wait (up to ``ready_s``) for ``health`` and
    for its start-up work to end; stop it and its descendants after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise Unavailable(f"exited with {proc.returncode}: " + " | ".join(tail))
            try:
                if _get(port, health) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"not ready on {health} after {ready_s:g} s")
            time.sleep(0.2)
        settle(proc.pid)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, wait up to 20 s for it and every descendant seen
    before (whatever group it moved to) to exit, then SIGKILL those left, by pid."""
    members = tree(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 20
    while True:
        proc.poll()  # reap the leader
        stats = _stats()
        left = [p for p, (start, _) in members.items() if p in stats and stats[p][2] == start]
        left = [p for p in left if stats[p][1] != "Z"]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, HEADERS)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
