"""The enricher service: language, entities, countries, keywords, summary and tone per article.

Consumes `newsflow.enrich` (batches of stored articles: id, title, body); produces enrichments on
`newsflow.store`. Needs only the broker: the article text travels in the message.
"""

from __future__ import annotations

import argparse

from services.enricher.tasks import register_tasks
from shared.celery_app import worker_argv
from shared.queues import Queue
from shared.runtime import service_runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="newsflow enricher", description=__doc__)
    parser.add_argument("--concurrency", "-c", type=int, help="enrichment processes (default: setting)")
    parser.add_argument("--hostname", "-n", default="enricher@%h", help="Celery node name")
    args = parser.parse_args(argv)
    runtime = service_runtime("enricher")
    settings = runtime.settings
    register_tasks(runtime.celery, runtime)
    runtime.celery.worker_main(worker_argv(Queue.ENRICH, concurrency=args.concurrency or settings.enricher.concurrency,
                                           hostname=args.hostname, log_level=settings.log_level))


if __name__ == "__main__":
    main()
