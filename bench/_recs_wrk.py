"""``wrk`` for GET routes with a random path per request, for bench/recommendations.py.

bench/_load.py's ``wrk`` POSTs a fixed list of bodies; the read API is a GET whose path
names a user, drawn at random for every request here (LuaJIT's ``math.random``, seeded,
in wrk's own request hook: no Python in the request path). The ``done()`` hook prints
wrk's summary as one JSON line, read back as in bench/_load.py. No ``response`` hook:
wrk would hand every answer to Lua. A non-2xx/3xx answer is counted in ``status``.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

_LUA = """
local users = USERS
local prefix = "PREFIX"
local suffix = "SUFFIX"
init = function(args)
  math.randomseed(SEED)
end
request = function()
  return wrk.format("GET", prefix .. math.random(0, users - 1) .. suffix)
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


def wrk_get(
    port: int,
    prefix: str,
    suffix: str,
    users: int,
    connections: int,
    seconds: float,
    *,
    threads: int = 1,
    seed: int = 1,
) -> dict[str, Any]:
    """``GET {prefix}{random user id in [0, users)}{suffix}`` on ``connections`` keep-alive
    connections for ``seconds`` (whole seconds); wrk's summary, requests/s and the CPU
    seconds wrk itself used."""
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed; apt-get install wrk")
    script = _LUA.replace("USERS", str(users)).replace("SEED", str(seed))
    script = script.replace("PREFIX", prefix).replace("SUFFIX", suffix)
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "get.lua"
        lua.write_text(script)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            [
                exe,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(lua),
                f"http://127.0.0.1:{port}{prefix}0{suffix}",
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
    summary["seconds"] = summary["duration_us"] / 1e6
    summary["rps"] = summary["requests"] / summary["seconds"]
    summary["socket_errors"] = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    summary["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return summary
