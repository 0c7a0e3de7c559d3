"""Readiness follows the servers (SPEC section 7, "Health"), done for real under a running api and a running
storage service (its metrics port): the private PostgreSQL stopped, the private Redis killed, and each of them
frozen (SIGSTOP to every process of the server: it takes connections and never answers, as behind a network
that drops packets). `/readyz` turns 503 naming the server while it is away, answering promptly all the same,
and 200 again once it is back, with no service restarted; `/healthz` (alive) stays 200 throughout: the Celery
consumer of storage lives on through an outage, and an outage is no reason to restart a process.

Run with `pytest tests/faults/test_readiness.py -s` to see one report line per outage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psutil
import pytest

from tests.faults.rig import Rig
from tests.support import ServiceProcess, free_port

pytestmark = pytest.mark.integration

STATE_TIMEOUT_S = 30.0  # for /readyz to follow a server that went away or came back
PROMPT_S = 5.0  # the longest a probe may take to answer, whatever the servers do
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

    @property
    def name(self) -> str:
        return self.process.service

    @property
    def pid(self) -> int | None:
        return None if self.process.process is None else self.process.process.pid

    def running(self) -> bool:
        return self.process.process is not None and self.process.process.poll() is None

    def probe(self, path: str) -> Probe:
        start = time.monotonic()
        response = httpx.get(f"{self.base}{path}", timeout=PROMPT_S * 3)
        took_s = time.monotonic() - start
        if self.name == "api":  # JSON: {"status": ..., "problems": [...]}
            problems = response.json().get("problems", []) if path == "/readyz" else []
        else:  # the metrics port: one problem a line, or "ready"
            problems = [] if response.status_code == 200 else response.text.strip().splitlines()
        return Probe(response.status_code, problems, took_s)


def poll(condition: Callable[[], bool], what: str, timeout_s: float = STATE_TIMEOUT_S) -> float:
    """Until condition() holds; returns the seconds it took. (Not Rig.wait_until: its report of a timeout
    reads the ledger, which cannot be read while the database is away.)"""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic() - start


def start_api(rig: Rig) -> Service:
    port = free_port()
    api = Service(rig.start("api", "--port", str(port)), f"http://127.0.0.1:{port}")

    def answers() -> bool:
        assert api.running(), "the api exited"
        try:
            return api.probe("/healthz").status == 200
        except httpx.TransportError:
            return False
    poll(answers, "the api answering")
    return api


def start_storage(rig: Rig) -> Service:
    storage = rig.start("storage", env={"NEWSFLOW_METRICS__PORT": "0"})  # a free port, logged
    storage.wait_for_log("metrics, health and readiness on port")  # once its consumer is ready
    found = re.search(r"metrics, health and readiness on port (\d+)", storage.log())
    assert found is not None
    return Service(storage, f"http://127.0.0.1:{found.group(1)}")


def ready(probe: Probe) -> bool:
    return probe.status == 200 and not probe.problems


def not_ready_for(server: str) -> Callable[[Probe], bool]:
    return lambda probe: probe.status == 503 and any(p.startswith(f"{server}:") for p in probe.problems)


def wait_for_readiness(services: list[Service], what: str, wanted: Callable[[Probe], bool]
                       ) -> tuple[float, list[Probe], float]:
    """Polls every service's /readyz until every answer is `wanted`; each answer must come within PROMPT_S.
    Returns the seconds it took, the last answers and the slowest answer's seconds."""
    last: list[Probe] = []
    slowest_s = 0.0

    def reached() -> bool:
        nonlocal last, slowest_s
        last = [service.probe("/readyz") for service in services]
        for service, probe in zip(services, last, strict=True):
            assert probe.took_s < PROMPT_S, f"{service.name} /readyz took {probe.took_s:.1f} s"
        slowest_s = max(slowest_s, *(p.took_s for p in last))
        return all(map(wanted, last))

    took_s = poll(reached, f"/readyz {what}")
    return took_s, last, slowest_s


def assert_alive(services: list[Service]) -> None:
    for service in services:
        probe = service.probe("/healthz")
        assert probe.status == 200 and probe.took_s < PROMPT_S, (
            f"{service.name} /healthz {probe.status} in {probe.took_s:.1f} s")


class Freezer:
    """SIGSTOP to a server's processes (its main process and every child), SIGCONT to the same ones."""

    def __init__(self, main_pid: Callable[[], int]) -> None:
        self.main_pid = main_pid
        self.frozen: list[psutil.Process] = []

    def freeze(self) -> None:
        main = psutil.Process(self.main_pid())
        self.frozen = [main, *main.children(recursive=True)]  # PostgreSQL: a backend per connection
        for process in self.frozen:
            process.suspend()

    def thaw(self) -> None:
        while self.frozen:
            self.frozen.pop().resume()


@contextmanager
def printing_logs_on_failure(rig: Rig) -> Iterator[None]:
    try:
        yield
    except BaseException:
        print(f"\n{rig.name}: service logs\n{rig.logs()}", flush=True)
        raise


def outage(services: list[Service], server: str, what: str, *, stop: Callable[[], None],
           start: Callable[[], None], ensure_running: Callable[[], None]) -> None:
    """stop() the `server` (`what` says how), see every /readyz say so while every /healthz stays 200; start()
    it, see every /readyz ready again, from the same processes."""
    pids = [s.pid for s in services]
    stop()
    try:
        noticed_s, down, slowest_s = wait_for_readiness(services, f"503 with a {server}: problem",
                                                        not_ready_for(server))
        assert_alive(services)
        start()
    finally:
        ensure_running()  # for what follows, whatever happened here
    recovered_s, _, _ = wait_for_readiness(services, "200 again", ready)
    assert all(s.running() for s in services) and [s.pid for s in services] == pids, "a service was restarted"
    assert_alive(services)
    problems = "; ".join(f"{s.name}: {' | '.join(p.problems)}" for s, p in zip(services, down, strict=True))
    print(f"\nREADINESS | {what} | 503 on both {noticed_s:.1f} s after, slowest answer meanwhile {slowest_s:.2f} s "
          f"| 200 again {recovered_s:.1f} s after it was back, same processes | {problems}", flush=True)


def test_readyz_follows_the_database_and_the_broker_and_recovers_by_itself(rig: Rig) -> None:
    postgres = Freezer(lambda: rig.pg.server.get_postmaster_info().pid)
    redis_server = Freezer(lambda: rig.broker.process.pid if rig.broker.process is not None else 0)

    def ensure_broker() -> None:
        if not rig.broker.answers():
            rig.broker.start()

    with printing_logs_on_failure(rig):
        services = [start_api(rig), start_storage(rig)]
        wait_for_readiness(services, "200 at start", ready)
        assert_alive(services)

        outage(services, "database", "PostgreSQL stopped (fast shutdown), started again",
               stop=rig.pg.stop, start=rig.pg.start, ensure_running=rig.pg.ensure_running)
        outage(services, "database", "PostgreSQL frozen (SIGSTOP), resumed",
               stop=postgres.freeze, start=postgres.thaw, ensure_running=postgres.thaw)
        # kill -9, then a new, empty server on the same port (no persistence; nothing was queued anyway).
        outage(services, "broker", "Redis killed (kill -9), started again",
               stop=rig.broker.kill, start=rig.broker.start, ensure_running=ensure_broker)
        outage(services, "broker", "Redis frozen (SIGSTOP), resumed",
               stop=redis_server.freeze, start=redis_server.thaw, ensure_running=redis_server.thaw)
        assert [p.service for p in rig.processes] == ["api", "storage"], "a service was started again"
