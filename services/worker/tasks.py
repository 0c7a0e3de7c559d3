"""Thin Celery tasks for the worker: decode the message, call the stage, pass the result on."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from services.worker.stage import load_queued, parse_batch
from shared.db import transaction
from shared.errors import TransientError, transient_boundary
from shared.ledger import fail_drops, hand_over, pick_up
from shared.queues import TaskName
from shared.records import Stage
from shared.runtime import Runtime

MAX_TRANSIENT_RETRIES = 10


def register_tasks(app: Celery, runtime: Runtime) -> None:
    worker_process_init.connect(lambda **_: runtime.warm_up(), weak=False)

    pipeline = runtime.settings.pipeline

    @app.task(name=TaskName.PARSE, autoretry_for=(TransientError,), retry_backoff=True, retry_backoff_max=60,
              retry_jitter=True, max_retries=MAX_TRANSIENT_RETRIES)
    def parse_drops(drop_ids: list[int]) -> None:
        try:
            with transient_boundary():
                # The pickup is committed before the work: a file that kills its worker is counted.
                with transaction(runtime.sessions) as session:
                    picked = pick_up(session, drop_ids, Stage.PARSE, lease_s=pipeline.lease_s)
                    drops = load_queued(session, sorted(picked))
                outcomes = parse_batch(drops, max_bytes=pipeline.max_bytes)
                if outcomes:
                    with transaction(runtime.sessions) as session:  # before sending: storage may take it at once
                        hand_over(session, [o.drop_id for o in outcomes], Stage.STORE)
                    app.send_task(TaskName.STORE, kwargs={"outcomes": [o.model_dump(mode="json") for o in outcomes]})
        except TransientError:
            raise
        except Exception as e:  # permanent: retrying will not help; keep the error with the drops
            fail_drops(runtime, drop_ids, f"worker: {type(e).__name__}: {e}")
            raise
