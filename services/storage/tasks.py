"""Thin Celery task for the storage service."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from services.storage.store import store_outcomes
from shared.db import transaction
from shared.errors import TransientError, transient_boundary
from shared.queues import TaskName
from shared.records import DropOutcome
from shared.runtime import Runtime

MAX_TRANSIENT_RETRIES = 10


def register_tasks(app: Celery, runtime: Runtime) -> None:
    worker_process_init.connect(lambda **_: runtime.warm_up(), weak=False)

    @app.task(name=TaskName.STORE, autoretry_for=(TransientError,), retry_backoff=True, retry_backoff_max=60,
              retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
    def store_drop_outcomes(outcomes: list[dict]) -> None:
        decoded = [DropOutcome.model_validate(o) for o in outcomes]
        with transient_boundary(), transaction(runtime.sessions) as session:
            store_outcomes(session, decoded, threshold=runtime.settings.dedup.threshold)
