"""The drop ledger in PostgreSQL is the system of record; the broker only carries work.

Dispatching sends drop ids in batches; the reconciler re-sends drops whose lease ran out (a lost
message, a killed worker, a restarted broker). Both are safe to run from several places at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db import transaction
from shared.models import Drop
from shared.queues import TaskName
from shared.records import DropStatus
from shared.runtime import Runtime

log = logging.getLogger(__name__)

MAX_DELIVERIES = 5  # a drop whose batch kept dying this often is failed, not retried forever


def chunked(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def dispatch(app: Celery, drop_ids: Sequence[int], *, batch_size: int) -> int:
    """Send queued drops to the parse queue, `batch_size` per message; returns the messages sent."""
    sent = 0
    for batch in chunked(sorted(drop_ids), batch_size):
        app.send_task(TaskName.PARSE, kwargs={"drop_ids": batch})
        sent += 1
    return sent


def claim_expired(session: Session, *, lease_s: float, limit: int = 1000, all_queued: bool = False) -> list[int]:
    """Renew the lease of queued drops whose lease ran out (or all queued ones) and return their ids.

    SKIP LOCKED lets several reconcilers run at once without claiming the same drop twice.
    """
    due = select(Drop.id).where(Drop.status == DropStatus.QUEUED)
    if not all_queued:
        due = due.where(Drop.lease_expires_at < func.now())
    due = due.order_by(Drop.id).limit(limit).with_for_update(skip_locked=True)
    claimed = session.execute(
        update(Drop).where(Drop.id.in_(due.scalar_subquery()))
        .values(attempts=Drop.attempts + 1, lease_expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s))
        .returning(Drop.id, Drop.attempts)
    ).all()
    exhausted = [row.id for row in claimed if row.attempts >= MAX_DELIVERIES]
    if exhausted:
        session.execute(
            update(Drop).where(Drop.id.in_(exhausted)).values(
                status=DropStatus.FAILED, reason="retries_exhausted", finished_at=func.now(),
                detail=f"not finished after {MAX_DELIVERIES} deliveries; replay it after a fix",
            )
        )
        log.error("drops failed after repeated deliveries", extra={"drop_ids": exhausted})
    return sorted(row.id for row in claimed if row.attempts < MAX_DELIVERIES)


def reconcile(runtime: Runtime, *, all_queued: bool = False) -> int:
    """Re-send queued drops whose lease ran out (or all, after the broker lost every message)."""
    pipeline = runtime.settings.pipeline
    with transaction(runtime.sessions) as session:
        ids = claim_expired(session, lease_s=pipeline.lease_s, all_queued=all_queued)
    if ids:
        log.warning("re-enqueued drops whose messages were lost", extra={"count": len(ids)})
    dispatch(runtime.celery, ids, batch_size=pipeline.batch_size)
    return len(ids)


def status_counts(session: Session, drop_ids: Sequence[int]) -> Counter[DropStatus]:
    rows = session.execute(
        select(Drop.status, func.count()).where(Drop.id.in_(drop_ids)).group_by(Drop.status)
    ).all()
    return Counter({DropStatus(status): count for status, count in rows})
