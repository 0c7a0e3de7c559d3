"""Flower as a real client of the test broker, started the way compose starts it (`celery --broker=URL flower`),
behind basic auth: it sees every newsflow service's Celery node, each with its queue, and a second worker started
on the same host shows as a node of its own (node names are SERVICE-PID@HOST)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ServiceProcess, TestServers, free_port

pytestmark = pytest.mark.integration

AUTH = ("ops", "flower-test-password")
QUEUES = {"worker": "newsflow.parse", "storage": "newsflow.store", "enricher": "newsflow.enrich"}
WAIT_S = 60


@pytest.fixture
def flower(pipeline: TestServers) -> Iterator[str]:
    port = free_port()
    log = pipeline.logs / f"flower-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", f"--broker={pipeline.env['NEWSFLOW_BROKER_URL']}", "flower",
             f"--port={port}", "--address=127.0.0.1", f"--basic-auth={':'.join(AUTH)}"],
            env={**os.environ, **pipeline.env}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if httpx.get(f"{base}/healthcheck", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def newsflow_nodes(base: str, expected: dict[str, int]) -> dict[str, dict]:
    """Flower's workers (asked afresh) once it sees `expected` nodes per service."""
    deadline = time.monotonic() + WAIT_S
    while True:
        workers = httpx.get(f"{base}/api/workers", params={"refresh": "1"}, auth=AUTH, timeout=30).json()
        seen = {service: [n for n in workers if n.startswith(f"{service}-")] for service in expected}
        if all(len(seen[s]) >= count for s, count in expected.items()):
            return workers
        assert time.monotonic() < deadline, f"flower sees {sorted(workers)}"
        time.sleep(1)


def test_flower_sees_every_worker_and_queue(pipeline: TestServers, flower: str) -> None:
    assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401, "no password, no API"

    workers = newsflow_nodes(flower, {"worker": 1, "storage": 1, "enricher": 1})
    for node, info in workers.items():
        service = node.split("-", 1)[0]
        if service in QUEUES:
            assert QUEUES[service] in {q["name"] for q in info["active_queues"]}, (node, info["active_queues"])
    lengths = httpx.get(f"{flower}/api/queues/length", auth=AUTH, timeout=30).json()["active_queues"]
    assert set(QUEUES.values()) <= {q["name"] for q in lengths}
    assert all(isinstance(q["messages"], int) for q in lengths)

    with ServiceProcess("worker", pipeline, "--concurrency", "1") as second:
        workers = newsflow_nodes(flower, {"worker": 2})
        names = [n for n in workers if n.startswith("worker-")]
        assert len(names) == len(set(names)) >= 2
        assert any(n.startswith(f"worker-{second.process.pid}@") for n in names if second.process), names
