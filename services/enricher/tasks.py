"""Thin Celery task for the enricher: the model is loaded once per worker process, not per task."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from services.enricher.enrich import Enricher
from shared.db import transaction
from shared.enrichment import fail_enrichment, pick_up_enrichment
from shared.observe import PROCESSED
from shared.queues import TaskName
from shared.records import EnrichInput, Enrichment
from shared.runtime import Runtime
from shared.tasks import pipeline_task

log = logging.getLogger(__name__)


def enrich_each(enricher: Enricher, items: Sequence[EnrichInput]) -> tuple[list[Enrichment], dict[int, str]]:
    """The batch's enrichments, and per article that raised, why. A batch that raises is done again one
    article at a time, so one article the model code cannot take fails alone and the others are enriched."""
    try:
        return enricher.enrich(items), {}
    except Exception as e:
        if len(items) == 1:
            log.exception("enrichment failed", extra={"article_id": items[0].article_id})
            return [], {items[0].article_id: f"enricher: {type(e).__name__}: {e}"}
    results: list[Enrichment] = []
    errors: dict[int, str] = {}
    for item in items:
        done, failed = enrich_each(enricher, [item])
        results += done
        errors |= failed
    return results, errors


def message_ids(kwargs: Mapping[str, Any]) -> list[int]:
    """The articles a message names: `article_ids`, or (a message sent before 2026-11-29, still queued
    through an upgrade) `items` carrying each article with its text, of which only the id is read now."""
    return list(kwargs.get("article_ids") or []) + [i["article_id"] for i in kwargs.get("items") or []]


def register_tasks(app: Celery, runtime: Runtime) -> None:
    settings = runtime.settings.enricher
    lease_s = runtime.settings.pipeline.lease_s
    loaded: list[Enricher] = []

    def enricher() -> Enricher:
        if not loaded:
            loaded.append(Enricher(settings.model, batch_size=settings.batch_size))
        return loaded[0]

    def warm_up(**_: object) -> None:  # in each pool process as it starts, so no task waits for the model
        enricher()
        runtime.warm_up()

    worker_process_init.connect(warm_up, weak=False)

    def failed(kwargs: Mapping[str, Any], error: str) -> None:
        with transaction(runtime.sessions) as session:
            fail_enrichment(session, {i: f"enricher: {error}" for i in message_ids(kwargs)})

    @pipeline_task(app, TaskName.ENRICH, stage="enrich", items="article_ids", on_failure=failed)
    def enrich_articles(article_ids: list[int] | None = None, items: list[dict] | None = None) -> None:
        # The pickup is committed before the work: an article that kills the enricher is counted.
        with transaction(runtime.sessions) as session:
            todo = pick_up_enrichment(session, message_ids({"article_ids": article_ids, "items": items}),
                                      lease_s=lease_s)
        if not todo:
            return
        results, errors = enrich_each(enricher(), todo)  # an article that raises fails alone
        PROCESSED.labels("enrich", "enriched").inc(len(results))
        PROCESSED.labels("enrich", "failed").inc(len(errors))
        if errors:
            with transaction(runtime.sessions) as session:
                fail_enrichment(session, errors)
        if results:
            app.send_task(TaskName.STORE_ENRICHMENTS,
                          kwargs={"enrichments": [r.model_dump(mode="json") for r in results]})
