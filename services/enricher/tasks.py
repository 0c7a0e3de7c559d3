"""Thin Celery task for the enricher: the model is loaded once per worker process, not per task."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init

from services.enricher.enrich import Enricher
from shared.queues import TaskName
from shared.records import EnrichInput
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def register_tasks(app: Celery, runtime: Runtime) -> None:
    settings = runtime.settings.enricher
    loaded: list[Enricher] = []

    def enricher() -> Enricher:
        if not loaded:
            loaded.append(Enricher(settings.model, batch_size=settings.batch_size))
        return loaded[0]

    # Load in each pool process as it starts, so no task waits for the model.
    worker_process_init.connect(lambda **_: enricher(), weak=False)

    @app.task(name=TaskName.ENRICH)
    def enrich_articles(items: list[dict]) -> None:
        decoded = [EnrichInput.model_validate(i) for i in items]
        results = enricher().enrich(decoded)
        app.send_task(TaskName.STORE_ENRICHMENTS, kwargs={"enrichments": [r.model_dump(mode="json") for r in results]})
