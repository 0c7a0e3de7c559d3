"""One way to register a pipeline task: errors are sorted in one place (as dramatiq's Retries middleware).

Transient errors (the database or broker unreachable, timeouts: shared.errors) are retried with exponential
backoff and jitter, up to MAX_TRANSIENT_RETRIES. Any other error is permanent: retrying will not help, so
the task's `on_failure` records it with the work it concerns (drops end `failed`, an enrichment `failed`,
the error kept and replayable), and the error is raised on for Celery to log.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery

from shared.errors import TransientError, transient_boundary
from shared.observe import BATCH_SIZE, PROCESSED, TASK_SECONDS

log = logging.getLogger(__name__)

MAX_TRANSIENT_RETRIES = 10
RETRY_BACKOFF_MAX_S = 60

# Called with the task's keyword arguments (as the message carried them) and "Type: message".
OnFailure = Callable[[Mapping[str, Any], str], None]


def pipeline_task(app: Celery, name: str, *, stage: str, items: str, on_failure: OnFailure
                  ) -> Callable[[Callable[..., None]], Any]:
    """Decorator: register `fn` as the Celery task `name` with newsflow's error mapping, timed and counted
    as work of `stage` (shared/observe.py; `items` names the keyword argument that carries the batch)."""
    def register(fn: Callable[..., None]) -> Any:
        @functools.wraps(fn)
        def run(**kwargs: Any) -> None:
            started = time.perf_counter()
            BATCH_SIZE.labels(stage).observe(len(kwargs.get(items) or ()))
            try:
                with transient_boundary():
                    fn(**kwargs)
            except TransientError:
                raise  # retried with backoff (autoretry_for below)
            except Exception as e:
                PROCESSED.labels(stage, "failed").inc(len(kwargs.get(items) or ()))
                error = f"{type(e).__name__}: {e}"
                with transient_boundary():  # a database gone now: this retry records it later
                    on_failure(kwargs, error)
                raise
            finally:
                TASK_SECONDS.labels(stage).observe(time.perf_counter() - started)
        return app.task(name=name, autoretry_for=(TransientError,), retry_backoff=True,
                        retry_backoff_max=RETRY_BACKOFF_MAX_S, retry_jitter=True,
                        max_retries=MAX_TRANSIENT_RETRIES)(run)
    return register
