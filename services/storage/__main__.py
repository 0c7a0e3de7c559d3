"""The storage service: persists drop outcomes (articles, drop states) to PostgreSQL.

Consumes `newsflow.store` (batches of outcomes from the worker); produces rows in `articles` and
terminal states in `drops`.
"""

from __future__ import annotations

from services.storage.tasks import register_tasks
from shared.queues import Queue
from shared.runtime import run_consumer


def main(argv: list[str] | None = None) -> None:
    run_consumer("storage", Queue.STORE, register_tasks, doc=__doc__,
                 default_concurrency=lambda settings: settings.storage.concurrency, argv=argv)


if __name__ == "__main__":
    main()
