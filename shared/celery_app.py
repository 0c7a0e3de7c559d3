"""The Celery app factory: one configuration for every service, JSON only, at-least-once."""

from __future__ import annotations

import time
from collections.abc import Callable

from celery import Celery
from kombu import Queue as KombuQueue

from shared.errors import SystemFailure
from shared.queues import ROUTES, Queue

TASK_SOFT_TIME_LIMIT_S = 240
TASK_HARD_TIME_LIMIT_S = 300
# Longer than the hard limit, or Redis hands a still-running task to a second worker (kombu#337).
VISIBILITY_TIMEOUT_S = 3600


def create_celery(broker_url: str, *, name: str = "newsflow") -> Celery:
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update(
        # Pickle on a broker others can write to is remote code execution (CVE-2020-11981).
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # PostgreSQL holds every drop's state; results in the broker would be a second truth.
        task_ignore_result=True,
        result_backend=None,
        # Ack after the handler ran, so a crash before the end leaves the message to be redelivered.
        task_acks_late=True,
        # Not requeued by Celery when the worker dies: a task that kills its worker would come back
        # forever (celery#1628). The reconciler re-sends it after its lease instead, counting the
        # deliveries in the ledger and failing the drop after MAX_DELIVERIES.
        task_reject_on_worker_lost=False,
        # One message in hand per process: a crash strands at most one batch, and batches spread evenly.
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_S,
        task_time_limit=TASK_HARD_TIME_LIMIT_S,
        # Bodies go to Redis as the JSON text they are, not base64 of it (kombu's default): a third smaller,
        # and decoding base64 was 5% of a storage process's consumer (kombu reads either form).
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S, "body_encoding": "utf-8"},
        broker_connection_retry_on_startup=True,
        task_queues=[KombuQueue(q.value, routing_key=q.value) for q in Queue],
        task_routes={name.value: {"queue": queue.value} for name, queue in ROUTES.items()},
        task_default_queue=Queue.PARSE.value,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower and `newsflow status` read these
        task_send_sent_event=True,
    )
    return app


def worker_argv(queue: Queue, *, concurrency: int, hostname: str, log_level: str) -> list[str]:
    """The `celery worker` command line every consuming service runs."""
    quiet = ["--quiet"] if log_level.upper() in ("WARNING", "ERROR", "CRITICAL") else []  # no banner
    return [*quiet, "worker", "--queues", queue.value, "--concurrency", str(concurrency), "--hostname", hostname,
            "--loglevel", log_level, "--without-gossip", "--without-mingle"]


def wait_for_nodes(app: Celery, count: int, *, timeout_s: float = 60.0, alive: Callable[[], bool] = lambda: True
                   ) -> float:
    """Ping until `count` Celery nodes answer (or `alive()` turns false); returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not alive():
            raise SystemFailure("a service exited while starting")
        if len(app.control.ping(timeout=0.5)) >= count:
            return time.monotonic() - start
    raise TimeoutError(f"fewer than {count} Celery nodes answered within {timeout_s:.0f} s")


def queue_depths(app: Celery, queues: list[str]) -> dict[str, int]:
    """Messages waiting on each queue, over one connection (0 for a queue not declared yet)."""
    depths = {}
    with app.connection_for_write() as conn:
        for queue in queues:
            try:
                depths[queue] = conn.default_channel.queue_declare(queue=queue, passive=True).message_count
            except conn.channel_errors:
                depths[queue] = 0
                conn.release()  # an AMQP channel is closed by the error
                conn = app.connection_for_write()
    return depths


def queue_depth(app: Celery, queue: Queue) -> int:
    """Messages waiting in a queue (not those a worker holds); 0 for a queue not declared yet."""
    return queue_depths(app, [queue.value])[queue.value]
