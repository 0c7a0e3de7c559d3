"""Readiness follows the servers (SPEC section 7, "Health"), done for real: the private PostgreSQL stopped and
the private Redis killed under a running api and a running storage service. `/readyz` turns 503 naming the
server while it is away, answering promptly all the same, and 200 again once it is back, with no service
restarted; `/healthz` (alive) stays 200 throughout: an outage is not a reason to restart a process.

Run with `pytest tests/faults/test_readiness.py -s` to see one report line per outage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from tests.faults.rig import Rig
from tests.faults.servers import free_port
from tests.support import ServiceProcess

pytestmark = pytest.mark.integration

STATE_TIMEOUT_S = 30.0  # for /readyz to follow a server that went away or came back
PROMPT_S = 5.0  # the longest a probe may take to answer, outage or not (a kubelet gives up after 1 s by default)
POLL_S = 0.2


@dataclass
class Probe:
    status: int
    problems: list[str]
    took_s: float


@dataclass
class Service:
    """A running service and the base URL of its /healthz and /readyz."""

    process: ServiceProcess
    base: str

    def probe(self, path: str) -> Probe:
        start = time.monotonic()
        response = httpx.get(f"{self.base}{path}", timeout=PROMPT_S * 3)
        took_s = time.monotonic() - start
        if self.process.service == "api":  # JSON: {"status": ..., "problems": [...]}
            problems = response.json().get("problems", []) if path == "/readyz" else []
        else:  # the metrics port: one problem a line, or "ready"
            problems = [] if response.status_code == 200 else response.text.strip().splitlines()
        return Probe(response.status_code, problems, took_s)


def start_api(rig: Rig) -> Service:
    port = free_port()
    api = rig.start("api", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    rig.wait_until(lambda: answers(api, f"{base}/healthz"), "the api answering", STATE_TIMEOUT_S)
    return Service(api, base)


def start_storage(rig: Rig) -> Service:
    storage = rig.start("storage", env={"NEWSFLOW_METRICS__PORT": "0"})  # a free port, logged
    storage.wait_for_log("metrics, health and readiness on port")
    found = re.search(r"metrics, health and readiness on port (\d+)", storage.log())
    assert found is not None
    return Service(storage, f"http://127.0.0.1:{found.group(1)}")


def answers(process: ServiceProcess, url: str) -> bool:
    assert process.process is not None and process.process.poll() is None, f"{process.service} exited"
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.TransportError:
        return False


def wait_for_readiness(rig: Rig, services: list[Service], what: str, wanted: Callable[[Probe], bool]
                       ) -> tuple[float, list[Probe]]:
    """Polls every service's /readyz until each answer is `wanted` (bounded); every answer must come promptly.
    Returns the seconds it took and the last answers."""
    last: list[Probe] = []

    def reached() -> bool:
        nonlocal last
        last = [service.probe("/readyz") for service in services]
        slow = [(s.process.service, p.took_s) for s, p in zip(services, last, strict=True) if p.took_s > PROMPT_S]
        assert not slow, f"/readyz answered slowly: {slow}\n{rig.logs()}"
        return all(map(wanted, last))

    took_s = rig.wait_until(reached, f"/readyz {what}", STATE_TIMEOUT_S, poll_s=POLL_S)
    return took_s, last


def ready(probe: Probe) -> bool:
    return probe.status == 200 and not probe.problems


def not_ready_for(server: str) -> Callable[[Probe], bool]:
    return lambda probe: probe.status == 503 and any(p.startswith(f"{server}:") for p in probe.problems)


def assert_alive(rig: Rig, services: list[Service]) -> None:
    for service in services:
        probe = service.probe("/healthz")
        assert probe.status == 200 and probe.took_s < PROMPT_S, (
            f"{service.process.service} /healthz {probe.status} in {probe.took_s:.1f} s\n{rig.logs()}")


@contextmanager
def printing_logs_on_failure(rig: Rig) -> Iterator[None]:
    try:
        yield
    except BaseException:
        print(f"\n{rig.name}: service logs\n{rig.logs()}", flush=True)
        raise


def outage(rig: Rig, services: list[Service], server: str, stop: Callable[[], None], start: Callable[[], None],
           ensure_running: Callable[[], None]) -> None:
    """Stop `server`, see every /readyz say so while /healthz stays 200, start it, see every /readyz recover."""
    pids = [s.process.process.pid for s in services if s.process.process is not None]
    stopped_at = time.monotonic()
    stop()
    try:
        noticed_s, down = wait_for_readiness(rig, services, f"503 with a {server}: problem", not_ready_for(server))
        assert_alive(rig, services)
        started_at = time.monotonic()
        start()
    finally:
        ensure_running()  # for the next test, whatever happened here
    recovered_s, _ = wait_for_readiness(rig, services, "200 again", ready)
    # By themselves: the very processes started before the outage, none restarted.
    rig.assert_running()
    assert [s.process.process.pid for s in services if s.process.process is not None] == pids
    assert [p.service for p in rig.processes] == [s.process.service for s in services]
    assert_alive(rig, services)
    problems = "; ".join(f"{s.process.service}: {' | '.join(p.problems)}" for s, p in zip(services, down, strict=True))
    slowest = max(p.took_s for p in down)
    print(f"\nREADINESS | {server} stopped | 503 on both {noticed_s:.1f} s after the stop "
          f"({time.monotonic() - stopped_at:.1f} s down in all; slowest answer while down {slowest:.2f} s) | "
          f"200 again {recovered_s:.1f} s after the start ({time.monotonic() - started_at:.1f} s), "
          f"no restart | {problems}", flush=True)


def test_readyz_follows_the_database_and_the_broker_and_recovers_by_itself(rig: Rig) -> None:
    with printing_logs_on_failure(rig):
        services = [start_api(rig), start_storage(rig)]
        wait_for_readiness(rig, services, "200 at start", ready)
        assert_alive(rig, services)

        outage(rig, services, "database", stop=rig.pg.stop, start=rig.pg.start, ensure_running=rig.pg.ensure_running)

        def ensure_broker() -> None:
            if not rig.broker.answers():
                rig.broker.start()
        # kill -9 and a new, empty server on the same port some seconds later (no persistence: nothing queued).
        outage(rig, services, "broker", stop=rig.broker.kill, start=rig.broker.start, ensure_running=ensure_broker)
