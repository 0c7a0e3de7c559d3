"""The worker service: Celery workers that parse drops and sign them for near-duplicate search.

Consumes `newsflow.parse` (batches of drop ids); produces `newsflow.store` (one outcome per drop).
"""

from __future__ import annotations

from services.worker.tasks import register_tasks
from shared.queues import Queue
from shared.runtime import run_consumer


def main(argv: list[str] | None = None) -> None:
    run_consumer("worker", Queue.PARSE, register_tasks, doc=__doc__,
                 default_concurrency=lambda s: s.worker.concurrency, niceness=lambda s: s.worker.nice, argv=argv)


if __name__ == "__main__":
    main()
