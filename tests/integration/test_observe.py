"""Each service's own metrics, health and readiness on its metrics port: counters that add up the prefork
pool's children (a child killed loses nothing counted), /healthz that follows the Celery consumer, /readyz
that follows the database and broker."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from tests.support import ROOT, ServiceProcess, TestServers, wait_for_drops, write_atomically

pytestmark = pytest.mark.integration

WIKINEWS = sorted((ROOT / "tests" / "data" / "wikinews").glob("*.txt"))


def metrics_port(process: ServiceProcess) -> int:
    process.wait_for_log("metrics, health and readiness on port")
    return int(re.search(r"metrics, health and readiness on port (\d+)", process.log()).group(1))


def counter(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels, in Prometheus' text format."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()))


def test_a_service_counts_its_pool_work_and_answers_its_probes(servers: TestServers, clean_db: None, sessions,
                                                              drop_dir: Path) -> None:
    # A broker database of their own (nobody else consumes from 9), so these services do all the work.
    broker_url = servers.env["NEWSFLOW_BROKER_URL"].rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(broker_url).flushdb()
    private = TestServers(env={**servers.env, "NEWSFLOW_BROKER_URL": broker_url, "NEWSFLOW_METRICS__PORT": "0"},
                          logs=servers.logs)
    with ServiceProcess("worker", private, "--concurrency", "2") as worker, ServiceProcess("storage", private) as \
            storage, ServiceProcess("watcher", private, "--drop", str(drop_dir)) as watcher:
        worker_base, storage_base = (f"http://127.0.0.1:{metrics_port(p)}" for p in (worker, storage))
        deadline = time.monotonic() + 30
        while httpx.get(f"{worker_base}/healthz", timeout=5).status_code != 200:  # until the consumer runs
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(f"{worker_base}/readyz", timeout=10).status_code == 200
        watcher.wait_for_log("watching")
        assert httpx.get(f"http://127.0.0.1:{metrics_port(watcher)}/healthz", timeout=5).status_code == 200

        for path in WIKINEWS[:6]:
            write_atomically(drop_dir / path.name, path.read_bytes())
        assert {d.status.value for d in wait_for_drops(sessions, 6)} == {"stored"}
        assert worker.process is not None
        for child in psutil.Process(worker.process.pid).children():  # the pool dies; Celery replaces it
            child.send_signal(signal.SIGKILL)
        time.sleep(2)
        worker_text = httpx.get(f"{worker_base}/metrics", timeout=10).text
        storage_text = httpx.get(f"{storage_base}/metrics", timeout=10).text

    assert counter(worker_text, "newsflow_processed_total", stage="parse", outcome="parsed") == 6  # none lost
    assert "newsflow_task_duration_seconds_bucket" in worker_text and "newsflow_batch_size_bucket" in worker_text
    assert counter(storage_text, "newsflow_processed_total", stage="store", outcome="stored") == 6
    assert counter(storage_text, "newsflow_end_to_end_seconds_count", stage="stored") == 6
