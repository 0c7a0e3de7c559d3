"""The drop ledger in PostgreSQL is the system of record; the broker only carries work.

Dispatching sends drop ids in batches; the reconciler re-sends drops whose lease ran out (a lost
message, a killed worker, a restarted broker). Both are safe to run from several places at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.celery_app import queue_depth
from shared.db import transaction
from shared.intake import read_file
from shared.models import Blob, Drop
from shared.queues import Queue, TaskName
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


def claim_expired(session: Session, *, lease_s: float, limit: int = 1000, all_queued: bool = False
                  ) -> list[tuple[int, int]]:
    """Renew the lease of queued drops whose lease ran out (or all queued ones); returns (id, deliveries).

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
    return sorted((row.id, row.attempts) for row in claimed if row.attempts < MAX_DELIVERIES)


def parse_backlog(runtime: Runtime) -> int:
    """Messages waiting on the parse queue beyond the back-pressure limit (0 when there is room)."""
    return max(0, queue_depth(runtime.celery, Queue.PARSE) - runtime.settings.watcher.max_queue_depth)


def reconcile(runtime: Runtime, *, all_queued: bool = False) -> int:
    """Re-send queued drops whose lease ran out (or all, after the broker lost every message).

    A drop re-sent before and still not done goes alone, so one file that kills its worker does not
    take the rest of its batch down with it.
    """
    pipeline = runtime.settings.pipeline
    if not all_queued and parse_backlog(runtime):
        return 0  # a deep queue is slow, not lost: leases run out while messages wait their turn
    with transaction(runtime.sessions) as session:
        claimed = claim_expired(session, lease_s=pipeline.lease_s, all_queued=all_queued)
    if claimed:
        log.warning("re-enqueued drops whose messages were lost", extra={"count": len(claimed)})
    dispatch(runtime.celery, [i for i, attempts in claimed if attempts <= 1], batch_size=pipeline.batch_size)
    dispatch(runtime.celery, [i for i, attempts in claimed if attempts > 1], batch_size=1)
    return len(claimed)


def status_counts(session: Session, drop_ids: Sequence[int]) -> Counter[DropStatus]:
    rows = session.execute(
        select(Drop.status, func.count()).where(Drop.id.in_(drop_ids)).group_by(Drop.status)
    ).all()
    return Counter({DropStatus(status): count for status, count in rows})


REPLAYABLE = (DropStatus.REJECTED, DropStatus.FAILED)


def select_replayable(session: Session, *, statuses: Sequence[DropStatus] = REPLAYABLE, reason: str | None = None,
                      ids: Sequence[int] = ()) -> list[Drop]:
    query = select(Drop).where(Drop.status.in_(statuses)).order_by(Drop.id).with_for_update(skip_locked=True)
    if reason:
        query = query.where(Drop.reason == reason)
    if ids:
        query = query.where(Drop.id.in_(ids))
    return list(session.execute(query).scalars())


def missing_bytes(session: Session, drops: Sequence[Drop], max_bytes: int) -> dict[int, str]:
    """Drops whose bytes are not kept (too large at intake), re-read from their file when it allows;
    returns why the others cannot be replayed."""
    kept = set(session.execute(
        select(Blob.sha256).where(Blob.sha256.in_([d.sha256 for d in drops if d.sha256]))
    ).scalars())
    problems: dict[int, str] = {}
    for drop in drops:
        if drop.sha256 in kept:
            continue
        read = read_file(Path(drop.path), max_bytes)
        if read.data is None:
            problems[drop.id] = (f"bytes not kept and the file is {'gone' if read.vanished else 'still too large'}; "
                                 "raise NEWSFLOW_PIPELINE__MAX_BYTES and keep the file in place")
        elif read.sha256 != drop.sha256:
            problems[drop.id] = "the file changed since; the watcher takes the new content as a new drop"
        else:
            session.execute(insert(Blob).on_conflict_do_nothing(),
                            [{"sha256": read.sha256, "size": read.size, "data": read.data}])
            kept.add(read.sha256)
    return problems


def requeue_for_replay(session: Session, drops: Sequence[Drop], *, lease_s: float, max_bytes: int
                       ) -> tuple[list[int], dict[int, str]]:
    """Put rejected or failed drops back to `queued`; returns the ids to dispatch and the ones left, with why."""
    problems = missing_bytes(session, drops, max_bytes)
    ids = [d.id for d in drops if d.id not in problems]
    if ids:
        session.execute(update(Drop).where(Drop.id.in_(ids)).values(
            status=DropStatus.QUEUED, reason=None, detail=None, article_id=None, finished_at=None, attempts=0,
            lease_expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s),
        ))
    return ids, problems


def fail_drops(runtime: Runtime, drop_ids: Sequence[int], error: str) -> None:
    """A permanent error at a task boundary: its drops end `failed` with the error kept (replayable)."""
    with transaction(runtime.sessions) as session:
        session.execute(update(Drop).where(Drop.id.in_(drop_ids), Drop.status == DropStatus.QUEUED).values(
            status=DropStatus.FAILED, reason="error", detail=error[:2000], finished_at=func.now()))
    log.error("drops failed", extra={"drop_ids": list(drop_ids), "error": error})
