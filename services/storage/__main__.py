"""The storage service: persists drop outcomes (articles, drop states) to PostgreSQL.

Consumes `newsflow.store` (batches of outcomes from the worker); produces rows in `articles` and
terminal states in `drops`.
"""

from __future__ import annotations

import argparse

from services.storage.tasks import register_tasks
from shared.celery_app import worker_argv
from shared.queues import Queue
from shared.runtime import service_runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="newsflow storage", description=__doc__)
    parser.add_argument("--concurrency", "-c", type=int, default=1, help="storage processes")
    parser.add_argument("--hostname", "-n", default="storage@%h", help="Celery node name")
    args = parser.parse_args(argv)
    runtime = service_runtime("storage")
    settings = runtime.settings
    register_tasks(runtime.celery, runtime)
    runtime.celery.worker_main(worker_argv(Queue.STORE, concurrency=args.concurrency, hostname=args.hostname,
                                           log_level=settings.log_level))


if __name__ == "__main__":
    main()
