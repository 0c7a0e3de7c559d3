"""The worker service: Celery workers that parse drops and drop exact duplicates.

Consumes `newsflow.parse` (batches of drop ids); produces `newsflow.store` (one outcome per drop).
"""

from __future__ import annotations

import argparse

from services.worker.tasks import register_tasks
from shared.celery_app import worker_argv
from shared.queues import Queue
from shared.runtime import service_runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="newsflow worker", description=__doc__)
    parser.add_argument("--concurrency", "-c", type=int, help="worker processes (default: setting)")
    parser.add_argument("--hostname", "-n", default="worker@%h", help="Celery node name")
    args = parser.parse_args(argv)
    runtime = service_runtime("worker")
    settings = runtime.settings
    register_tasks(runtime.celery, runtime)
    concurrency = args.concurrency or settings.worker.concurrency
    runtime.celery.worker_main(worker_argv(Queue.PARSE, concurrency=concurrency, hostname=args.hostname,
                                           log_level=settings.log_level))


if __name__ == "__main__":
    main()
