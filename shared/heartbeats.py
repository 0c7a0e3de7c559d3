"""Heartbeats: every service process records itself in PostgreSQL every HEARTBEAT_S (what it consumes, its
concurrency, the tasks it runs), so the operator view knows each stage's consumers from the database, with
none running and without a broadcast that waits out its timeout. A process that stops cleanly deletes its
row; one killed is offline once it has not beaten for LIVE_S.

The beat runs in a thread of the service's main process, on a connection of its own opened per beat (no
pool): Celery forks pool processes from that process, and a pooled connection must never cross a fork.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta

import psycopg

from shared.db import libpq_url

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
LIVE_S = 3 * HEARTBEAT_S  # not heard from for this long: offline
FORGET_S = 86_400  # rows of processes gone this long are deleted by the next beat of any process

BEAT = """
INSERT INTO heartbeats (node, service, host, pid, queues, concurrency, active, started_at, beat_at)
VALUES (%(node)s, %(service)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, %(active)s, now(), now())
ON CONFLICT (node) DO UPDATE SET service = EXCLUDED.service, host = EXCLUDED.host, pid = EXCLUDED.pid,
    queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, active = EXCLUDED.active, beat_at = now(),
    started_at = CASE WHEN heartbeats.pid = EXCLUDED.pid THEN heartbeats.started_at ELSE now() END
"""
FORGET = "DELETE FROM heartbeats WHERE beat_at < now() - %(age)s"


class Heart:
    """Beats for one service process until stop()."""

    def __init__(self, database_url: str, *, node: str, service: str, queues: Sequence[str] = (),
                 concurrency: int = 1, active: Callable[[], int] = lambda: 0) -> None:
        self.url = libpq_url(database_url)
        self.row = {"node": node, "service": service, "host": socket.gethostname(), "pid": os.getpid(),
                    "queues": list(queues), "concurrency": concurrency}
        self.active = active
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{service}", daemon=True)
        self.failing = False

    def start(self) -> Heart:
        self.thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.beat()
            if self.stopped.wait(HEARTBEAT_S):
                return

    def beat(self) -> None:
        try:
            with psycopg.connect(self.url, connect_timeout=5, autocommit=True) as conn:
                conn.execute(BEAT, self.row | {"active": self.active()})
                conn.execute(FORGET, {"age": timedelta(seconds=FORGET_S)})
            if self.failing:
                log.info("heartbeats recorded again")
            self.failing = False
        except psycopg.Error as e:  # the database is away: the service goes on, the next beat tries again
            if not self.failing:
                log.warning("cannot record the heartbeat: %s", str(e).splitlines()[0] if str(e) else e)
            self.failing = True

    def stop(self) -> None:
        """Stop beating and delete the row: a clean stop is not an outage."""
        self.stopped.set()
        self.thread.join(timeout=HEARTBEAT_S)
        try:
            with psycopg.connect(self.url, connect_timeout=5, autocommit=True) as conn:
                conn.execute("DELETE FROM heartbeats WHERE node = %(node)s AND pid = %(pid)s", self.row)
        except psycopg.Error:
            pass  # offline after LIVE_S anyway
