"""Thin Celery tasks for the storage service."""

from __future__ import annotations

import logging
import time

from celery import Celery
from celery.signals import worker_process_init

from services.storage.enrichments import store_enrichments
from services.storage.store import store_outcomes
from shared.clusters import LOCKED_AT
from shared.db import transaction
from shared.enrichment import dispatch_enrichment, fail_enrichment
from shared.errors import TransientError, transient_boundary
from shared.ledger import fail_drops, pick_up
from shared.queues import TaskName
from shared.records import DropOutcome, Enrichment, Stage
from shared.runtime import Runtime

log = logging.getLogger(__name__)
MAX_TRANSIENT_RETRIES = 10
RETRY = {"autoretry_for": (TransientError,), "retry_backoff": True, "retry_backoff_max": 60, "retry_jitter": True,
         "max_retries": MAX_TRANSIENT_RETRIES}


def register_tasks(app: Celery, runtime: Runtime) -> None:
    worker_process_init.connect(lambda **_: runtime.warm_up(), weak=False)
    settings = runtime.settings

    @app.task(name=TaskName.STORE, **RETRY)
    def store_drop_outcomes(outcomes: list[dict]) -> None:
        started = time.perf_counter()
        decoded = [DropOutcome.model_validate(o) for o in outcomes]
        try:
            with transient_boundary():
                # The pickup is committed before the work: a batch that kills storage is counted.
                with transaction(runtime.sessions) as session:
                    pick_up(session, [o.drop_id for o in decoded], Stage.STORE, lease_s=settings.pipeline.lease_s)
                with transaction(runtime.sessions) as session:
                    counts, to_enrich = store_outcomes(session, decoded, threshold=settings.dedup.threshold)
                    locked_at = session.info.get(LOCKED_AT)
                committed = time.perf_counter()  # the index lock is released with the commit
                # After the commit: a lost message is found again by the enrichment reconciler.
                dispatch_enrichment(app, to_enrich, batch_size=settings.pipeline.batch_size)
            log.info("batch stored", extra={
                "drops": len(decoded), "counts": dict(counts), "batch_ms": round((committed - started) * 1000, 3),
                "lock_held_ms": round((committed - locked_at) * 1000, 3) if locked_at else 0.0})
        except TransientError:
            raise
        except Exception as e:  # permanent: retrying will not help; keep the error with the drops
            fail_drops(runtime, [o.drop_id for o in decoded], f"storage: {type(e).__name__}: {e}")
            raise

    @app.task(name=TaskName.STORE_ENRICHMENTS, **RETRY)
    def store_article_enrichments(enrichments: list[dict]) -> None:
        decoded = [Enrichment.model_validate(e) for e in enrichments]
        try:
            with transient_boundary(), transaction(runtime.sessions) as session:
                store_enrichments(session, decoded)
        except TransientError:
            raise
        except Exception as e:  # permanent: the articles stay stored, their enrichment `failed` with the error
            with transient_boundary(), transaction(runtime.sessions) as session:
                fail_enrichment(session, {d.article_id: f"storage: {type(e).__name__}: {e}" for d in decoded})
            raise
