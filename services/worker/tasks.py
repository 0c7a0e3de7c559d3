"""Thin Celery tasks for the worker: decode the message, call the stage, pass the result on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from services.worker.stage import load_queued, parse_batch, with_search_vectors
from shared.db import transaction
from shared.ledger import fail_drops, hand_over, pick_up
from shared.observe import PROCESSED
from shared.queues import TaskName
from shared.records import Stage
from shared.runtime import Runtime
from shared.similarity import permutations
from shared.tasks import pipeline_task


def register_tasks(app: Celery, runtime: Runtime) -> None:
    permutations()  # imports datasketch here, before the pool forks, so that no pool process pays for it
    worker_process_init.connect(lambda **_: runtime.warm_up(), weak=False)
    pipeline = runtime.settings.pipeline

    def failed(kwargs: Mapping[str, Any], error: str) -> None:
        fail_drops(runtime, kwargs["drop_ids"], f"worker: {error}")

    @pipeline_task(app, TaskName.PARSE, stage="parse", items="drop_ids", on_failure=failed)
    def parse_drops(drop_ids: list[int]) -> None:
        # The pickup is committed before the work: a file that kills its worker is counted.
        with transaction(runtime.sessions) as session:
            picked = pick_up(session, drop_ids, Stage.PARSE, lease_s=pipeline.lease_s)
            drops = load_queued(session, sorted(picked))
        outcomes = parse_batch(drops, max_bytes=pipeline.max_bytes)
        for outcome in outcomes:
            PROCESSED.labels("parse", "parsed" if outcome.article else "rejected" if outcome.rejection
                             else "failed").inc()
        if outcomes:
            with transaction(runtime.sessions) as session:  # before sending: storage may take it at once
                outcomes = with_search_vectors(session, outcomes)
                hand_over(session, [o.drop_id for o in outcomes], Stage.STORE)
            app.send_task(TaskName.STORE, kwargs={"outcomes": [o.model_dump(mode="json") for o in outcomes]})
