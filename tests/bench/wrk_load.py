"""A closed-loop HTTP load generator that leaves the cores to the server: Debian's `wrk` (C, epoll, one thread),
driven by a Lua script that sends a list of request paths in turn with the API key.

The clients of bench_api.py used to be httpx asyncio tasks in the bench process: on a 2-core machine they took
about as much CPU as the api they measured. wrk sends the same requests for a fraction of that, and what it
does cost is reported beside the figures (its CPU per request, from the children's rusage).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# wrk runs request() per request and done() once; one thread, so one Lua state and one rotation.
SCRIPT = r"""
local paths, i = {}, 0
for line in io.lines(os.getenv("NEWSFLOW_WRK_PATHS")) do paths[#paths + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("NEWSFLOW_WRK_KEY")

request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nNEWSFLOW {"p50_us": %d, "p95_us": %d, "max_us": %d, "requests": %d, "duration_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    latency:percentile(50), latency:percentile(95), latency.max, summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


class WrkMissingError(RuntimeError):
    """wrk is not installed and could not be installed."""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured: latencies in ms, requests, seconds, and wrk's own CPU seconds."""

    p50_ms: float
    p95_ms: float
    max_ms: float
    requests: int
    seconds: float
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's package when missing (as root), or a clear error."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkMissingError("bench_api needs wrk, the HTTP load generator: apt-get install wrk (Debian, Ubuntu)")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(base: str, key: str, paths: list[str], *, clients: int, seconds: float) -> Load:
    """`clients` connections, each sending its next request as soon as the last one answered, for `seconds`,
    through `paths` in turn. Raises if any answer was not a 2xx or a socket failed."""
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="newsflow-wrk-") as folder:
        script, listing = Path(folder, "paths.lua"), Path(folder, "paths.txt")
        script.write_text(SCRIPT)
        listing.write_text("\n".join(paths) + "\n")
        env = {**os.environ, "NEWSFLOW_WRK_PATHS": str(listing), "NEWSFLOW_WRK_KEY": key}
        before = _children_cpu_s()
        done = subprocess.run([wrk, "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script),
                               base], env=env, capture_output=True, text=True, check=False)
        cpu_s = _children_cpu_s() - before
    lines = [line for line in done.stdout.splitlines() if line.startswith("NEWSFLOW ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    found = json.loads(lines[-1].removeprefix("NEWSFLOW "))
    if found["non_2xx"] or found["socket_errors"]:
        raise RuntimeError(f"wrk on {paths[0]}...: {found['non_2xx']} answers not 2xx, "
                           f"{found['socket_errors']} socket errors")
    return Load(p50_ms=found["p50_us"] / 1000, p95_ms=found["p95_us"] / 1000, max_ms=found["max_us"] / 1000,
                requests=found["requests"], seconds=found["duration_us"] / 1e6, client_cpu_s=cpu_s)
