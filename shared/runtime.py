"""Per-process dependencies built from settings: the Celery app and the database, created lazily.

Celery's prefork pool forks after import; a pooled connection must never cross a fork, so the
database engine is rebuilt in any process other than the one that built it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from functools import cached_property
from typing import Any

from celery import Celery, bootsteps
from celery.exceptions import SecurityWarning
from celery.signals import worker_ready, worker_shutdown
from celery.worker import state as worker_state
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.celery_app import create_celery, worker_argv
from shared.db import create_db_engine, create_session_factory
from shared.health import readiness
from shared.heartbeats import Heart
from shared.logging import setup_logging
from shared.observe import serve, use_multiprocess_dir
from shared.queues import Queue
from shared.settings import Settings


class Runtime:
    def __init__(self, settings: Settings, *, pool_size: int = 5) -> None:
        self.settings = settings
        self.pool_size = pool_size
        self._sessions: tuple[int, sessionmaker[Session], sessionmaker[Session]] | None = None

    @cached_property
    def celery(self) -> Celery:
        return create_celery(self.settings.require_urls()[1])

    def warm_up(self) -> None:
        """Connect once now, so the first task does not pay for imports and the first connection."""
        with self.sessions() as session:
            session.execute(text("SELECT 1"))

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._factories()[0]

    @property
    def read_sessions(self) -> sessionmaker[Session]:
        """Sessions in autocommit, for reads that need no transaction (each statement sees its own snapshot):
        no BEGIN and no ROLLBACK round trip around them (the api's read routes). Same pool as `sessions`."""
        return self._factories()[1]

    def _factories(self) -> tuple[sessionmaker[Session], sessionmaker[Session]]:
        pid = os.getpid()
        if self._sessions is None or self._sessions[0] != pid:
            engine = create_db_engine(self.settings.require_urls()[0], pool_size=self.pool_size)
            self._sessions = (pid, create_session_factory(engine),
                              create_session_factory(engine.execution_options(isolation_level="AUTOCOMMIT")))
        return self._sessions[1], self._sessions[2]


def service_runtime(service: str, *, pool_size: Callable[[Settings], int] = lambda _: 5) -> Runtime:
    """What every service's main() starts with: settings, logging, and the servers' URLs present."""
    settings = Settings()
    setup_logging(service, level=settings.log_level, json_lines=settings.log_json)
    if settings.embedded:
        raise SystemExit(
            f"newsflow {service}: set NEWSFLOW_DATABASE_URL and NEWSFLOW_BROKER_URL "
            "(or run `newsflow up`, which starts embedded servers and every service)"
        )
    return Runtime(settings, pool_size=pool_size(settings))


def run_consumer(service: str, queue: Queue, register: Callable[[Celery, Runtime], None], *, doc: str,
                 default_concurrency: Callable[[Settings], int], niceness: Callable[[Settings], int] = lambda _: 0,
                 argv: list[str] | None = None) -> None:
    """main() of a service that is a Celery worker on one queue: parse its options, register, run."""
    parser = argparse.ArgumentParser(prog=f"newsflow {service}", description=doc)
    parser.add_argument("--concurrency", "-c", type=int, help="processes (default: the service's setting)")
    # The pid keeps two services of one kind on one host apart (one node name each, or Celery warns and
    # Flower, pings and heartbeats see one).
    parser.add_argument("--hostname", "-n", default=f"{service}-{os.getpid()}@%h",
                        help="Celery node name (default SERVICE-PID@HOST)")
    args = parser.parse_args(argv)
    runtime = service_runtime(service)
    register(runtime.celery, runtime)
    concurrency = args.concurrency or default_concurrency(runtime.settings)
    # Celery warns at every start as root; the risk it names is pickle, which newsflow refuses (JSON only),
    # and the image runs as an unprivileged user. Nothing for a user of `make run` to act on.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    use_multiprocess_dir(service)  # before the pool forks: every child's metrics add up at /metrics
    os.nice(niceness(runtime.settings))  # the pool's processes inherit it
    # worker_main() drops the worker's exit status (click's non-standalone mode returns it, Celery ignores
    # it), so a worker that died of an unrecoverable error would exit 0 and look stopped on purpose to
    # whatever supervises it (restart: on-failure). Keep the status the worker set and exit with it.
    status: list[int] = []
    worker_shutdown.connect(lambda sender, **_: status.append(getattr(sender, "exitcode", None) or 0), weak=False)
    # Once the pool has forked, the main process beats for the whole node (shared/heartbeats.py).
    hearts: list[Heart] = []

    def ready(sender: Any, **_: Any) -> None:  # sender: the Celery consumer
        hearts.append(Heart(runtime.settings.require_urls()[0], node=sender.hostname, service=service,
                            queues=[queue.value], concurrency=concurrency,
                            active=lambda: len(worker_state.active_requests)).start())
        serve(runtime.settings.metrics.port_of(service), alive=lambda: sender.blueprint.state == bootsteps.RUN,
              ready=lambda: readiness(runtime))

    worker_ready.connect(ready, weak=False)
    def shutdown(**_: Any) -> None:
        for heart in hearts:
            heart.stop()

    worker_shutdown.connect(shutdown, weak=False)
    runtime.celery.worker_main(worker_argv(queue, concurrency=concurrency, hostname=args.hostname,
                                           log_level=runtime.settings.log_level))
    sys.exit(status[-1] if status else 0)
