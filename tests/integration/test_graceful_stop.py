"""SIGTERM is a warm shutdown: running work finishes, reserved work goes back to the queue."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from shared.celery_app import create_celery
from shared.db import transaction
from shared.intake import read_file, register_reads
from shared.ledger import dispatch
from shared.models import Drop
from shared.records import TERMINAL_STATUSES
from tests.support import ROOT, ServiceProcess, TestServers, wait_for_drops

pytestmark = pytest.mark.integration

WIKINEWS = ROOT / "tests" / "data" / "wikinews"
LEASE_S = 3600  # far beyond the test: recovery must come from the queue, not from the reconciler


def terminal_count(sessions) -> int:
    with sessions() as session:
        return session.execute(
            select(func.count()).select_from(Drop).where(Drop.status.in_(list(TERMINAL_STATUSES)))).scalar()


def test_sigterm_finishes_running_work_and_returns_the_rest(servers: TestServers, clean_db: None, sessions,
                                                            tmp_path: Path) -> None:
    # A Redis database of its own: not the shared pipeline's (15), nor a bench's (12-14).
    broker_url = servers.env["NEWSFLOW_BROKER_URL"].rsplit("/", 1)[0] + "/10"
    redis.Redis.from_url(broker_url).flushdb()
    env = {**servers.env, "NEWSFLOW_BROKER_URL": broker_url, "NEWSFLOW_PIPELINE__LEASE_S": str(LEASE_S)}
    private = TestServers(env=env, logs=servers.logs)
    files = sorted(WIKINEWS.glob("*.txt"))
    max_bytes = int(env["NEWSFLOW_PIPELINE__MAX_BYTES"])
    with transaction(sessions) as session:
        ids = [r.drop_id for r in register_reads(session, [read_file(p, max_bytes) for p in files],
                                                 host=socket.gethostname(), max_bytes=max_bytes)]

    with ServiceProcess("storage", private):
        first = ServiceProcess("worker", private, "--concurrency", "1", "-n", "first@%h")
        with first:
            private.wait_for_workers(2)
            dispatch(create_celery(broker_url), ids, batch_size=5)
            while terminal_count(sessions) < len(ids) // 4:
                time.sleep(0.05)
            assert first.process is not None
            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(timeout=60) == 0, first.log()
        done_at_stop = terminal_count(sessions)
        assert "Warm shutdown" in first.log() or "warm shutdown" in first.log().lower()
        assert done_at_stop < len(ids), "the stop must come in the middle of the stream"

        started = time.monotonic()
        with ServiceProcess("worker", private, "--concurrency", "1", "-n", "second@%h"):
            drops = wait_for_drops(sessions, len(ids), timeout_s=120)
        recovered_s = time.monotonic() - started

    assert recovered_s < LEASE_S
    assert len(drops) == len(ids)
    assert {d.status.value for d in drops} <= {"stored", "duplicate"}
