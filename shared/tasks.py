"""One way to register a pipeline task: errors are sorted in one place (as dramatiq's Retries middleware).

Transient errors (the database or broker unreachable, timeouts: shared.errors) are retried with exponential
backoff and jitter, up to MAX_TRANSIENT_RETRIES. Any other error is permanent: retrying will not help, so
the task's `on_failure` records it with the work it concerns (drops end `failed`, an enrichment `failed`,
the error kept and replayable), and the error is raised on for Celery to log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery

from shared.errors import TransientError, transient_boundary

log = logging.getLogger(__name__)

MAX_TRANSIENT_RETRIES = 10
RETRY_BACKOFF_MAX_S = 60

# Called with the task's keyword arguments (as the message carried them) and "Type: message".
OnFailure = Callable[[Mapping[str, Any], str], None]


def pipeline_task(app: Celery, name: str, *, on_failure: OnFailure) -> Callable[[Callable[..., None]], Any]:
    """Decorator: register `fn` as the Celery task `name` with newsflow's error mapping."""
    def register(fn: Callable[..., None]) -> Any:
        @functools.wraps(fn)
        def run(**kwargs: Any) -> None:
            try:
                with transient_boundary():
                    fn(**kwargs)
            except TransientError:
                raise  # retried with backoff (autoretry_for below)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                with transient_boundary():  # a database gone now: this retry records it later
                    on_failure(kwargs, error)
                raise
        return app.task(name=name, autoretry_for=(TransientError,), retry_backoff=True,
                        retry_backoff_max=RETRY_BACKOFF_MAX_S, retry_jitter=True,
                        max_retries=MAX_TRANSIENT_RETRIES)(run)
    return register
