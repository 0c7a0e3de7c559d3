"""Thin Celery tasks for the worker: decode the message, call the stage, pass the result on."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from services.worker.stage import parse_batch
from shared.errors import TransientError, transient_boundary
from shared.ledger import fail_drops
from shared.queues import TaskName
from shared.runtime import Runtime

MAX_TRANSIENT_RETRIES = 10


def register_tasks(app: Celery, runtime: Runtime) -> None:
    worker_process_init.connect(lambda **_: runtime.warm_up(), weak=False)

    max_bytes = runtime.settings.pipeline.max_bytes

    @app.task(name=TaskName.PARSE, autoretry_for=(TransientError,), retry_backoff=True, retry_backoff_max=60,
              retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
    def parse_drops(drop_ids: list[int]) -> None:
        try:
            with transient_boundary():
                with runtime.sessions() as session:
                    outcomes = parse_batch(session, drop_ids, max_bytes=max_bytes)
                if outcomes:
                    app.send_task(TaskName.STORE, kwargs={"outcomes": [o.model_dump(mode="json") for o in outcomes]})
        except TransientError:
            raise
        except Exception as e:  # permanent: retrying will not help; keep the error with the drops
            fail_drops(runtime, drop_ids, f"worker: {type(e).__name__}: {e}")
            raise
