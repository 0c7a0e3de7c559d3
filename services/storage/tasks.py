"""Thin Celery tasks for the storage service."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import text

from services.storage.enrichments import store_enrichments
from services.storage.store import store_outcomes
from shared.clusters import LOCKED_AT
from shared.db import transaction
from shared.enrichment import dispatch_enrichment, fail_enrichment
from shared.ledger import fail_drops, pick_up
from shared.observe import END_TO_END, PROCESSED
from shared.queues import TaskName
from shared.records import DropOutcome, Enrichment, Stage
from shared.runtime import Runtime
from shared.tasks import pipeline_task

log = logging.getLogger(__name__)
# Discovered -> enriched, of the batch just written (for newsflow_end_to_end_seconds).
ENRICHED_LAGS = text("SELECT extract(epoch FROM a.enriched_at - d.discovered_at) FROM articles a "
                     "JOIN drops d ON d.article_id = a.id AND d.status = 'stored' WHERE a.id = ANY(:ids)")


def register_tasks(app: Celery, runtime: Runtime) -> None:
    worker_process_init.connect(lambda **_: runtime.warm_up(), weak=False)
    settings = runtime.settings

    def outcomes_failed(kwargs: Mapping[str, Any], error: str) -> None:
        fail_drops(runtime, [o["drop_id"] for o in kwargs["outcomes"]], f"storage: {error}")

    def enrichments_failed(kwargs: Mapping[str, Any], error: str) -> None:
        with transaction(runtime.sessions) as session:  # the articles stay stored; their enrichment `failed`
            fail_enrichment(session, {e["article_id"]: f"storage: {error}" for e in kwargs["enrichments"]})

    @pipeline_task(app, TaskName.STORE, stage="store", items="outcomes", on_failure=outcomes_failed)
    def store_drop_outcomes(outcomes: list[dict]) -> None:
        started = time.perf_counter()
        decoded = [DropOutcome.model_validate(o) for o in outcomes]
        # The pickup is committed before the work: a batch that kills storage is counted.
        with transaction(runtime.sessions) as session:
            pick_up(session, [o.drop_id for o in decoded], Stage.STORE, lease_s=settings.pipeline.lease_s)
        with transaction(runtime.sessions) as session:
            stored = store_outcomes(session, decoded, threshold=settings.dedup.threshold,
                                    max_unfinished=settings.pipeline.max_unfinished)
            locked_at = session.info.get(LOCKED_AT)
        committed = time.perf_counter()  # the index lock is released with the commit
        # After the commit (recorded as sent by it): a lost message is found again by the enrichment reconciler.
        dispatch_enrichment(runtime.celery, stored.to_enrich, batch_size=settings.pipeline.batch_size)
        for state, count in stored.counts.items():
            PROCESSED.labels("store", state).inc(count)
        for lag in stored.lags_s:
            END_TO_END.labels("stored").observe(lag)
        log.info("batch stored", extra={
            "drops": len(decoded), "counts": dict(stored.counts), "batch_ms": round((committed - started) * 1000, 3),
            "lock_held_ms": round((committed - locked_at) * 1000, 3) if locked_at else 0.0})

    @pipeline_task(app, TaskName.STORE_ENRICHMENTS, stage="store_enrichment", items="enrichments",
                   on_failure=enrichments_failed)
    def store_article_enrichments(enrichments: list[dict]) -> None:
        decoded = [Enrichment.model_validate(e) for e in enrichments]
        with transaction(runtime.sessions) as session:
            store_enrichments(session, decoded)
        PROCESSED.labels("store_enrichment", "stored").inc(len(decoded))
        with runtime.sessions() as session:
            for lag in session.execute(ENRICHED_LAGS, {"ids": [e.article_id for e in decoded]}).scalars():
                END_TO_END.labels("enriched").observe(float(lag))
