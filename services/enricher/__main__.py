"""The enricher service: language, entities, countries, keywords, summary and tone per article.

Consumes `newsflow.enrich` (batches of stored articles: id, title, body); produces enrichments on
`newsflow.store`. Needs only the broker: the article text travels in the message.
"""

from __future__ import annotations

from services.enricher.tasks import register_tasks
from shared.queues import Queue
from shared.runtime import run_consumer


def main(argv: list[str] | None = None) -> None:
    run_consumer("enricher", Queue.ENRICH, register_tasks, doc=__doc__,
                 default_concurrency=lambda s: s.enricher.concurrency, niceness=lambda s: s.enricher.nice,
                 argv=argv)


if __name__ == "__main__":
    main()
