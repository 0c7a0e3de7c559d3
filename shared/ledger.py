"""The drop ledger in PostgreSQL is the system of record; the broker only carries work.

Each queued drop records its stage (`parse`, then `store`), when its message was sent and when a worker
picked it up. A pickup is counted (`deliveries`) in the worker's own transaction and starts the drop's
lease. The reconciler re-sends two kinds of drops, from parsing (storage needs the worker's outcome):
- picked up and not finished within the lease (a killed or stuck worker): `retries` counts these
  re-sends, each goes alone (one file that kills its worker must not take a batch down again), and the
  MAX_RETRIES-th fails the drop (`retries_exhausted`) instead;
- never picked up, sent longer than a lease ago, while its stage's queue is empty: a lost message.
  A drop waiting in a long queue is neither, so a slow queue is never flooded with copies nor fails a drop.
Both are safe to run from several places at once (SKIP LOCKED).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from celery import Celery
from sqlalchemy import and_, case, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.celery_app import queue_depth
from shared.db import among, seconds, transaction
from shared.intake import read_file
from shared.models import Blob, Drop
from shared.queues import STAGE_QUEUES, TaskName
from shared.records import DropReason, DropStatus, Stage
from shared.runtime import Runtime

log = logging.getLogger(__name__)

MAX_RETRIES = 5  # a drop whose worker kept dying with it is failed after this many re-sends, not retried forever


T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def dispatch(app: Celery, drop_ids: Sequence[int], *, batch_size: int) -> int:
    """Send queued drops to the parse queue, `batch_size` per message; returns the messages sent."""
    sent = 0
    for batch in chunked(sorted(drop_ids), batch_size):
        app.send_task(TaskName.PARSE, kwargs={"drop_ids": batch})
        sent += 1
    return sent


PICK_UP = text("""
    UPDATE drops SET stage = :stage, picked_at = now(), deliveries = deliveries + 1,
           lease_expires_at = now() + CAST(:lease AS interval)
    WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'queued'
    RETURNING id""")
HAND_OVER = text("""
    UPDATE drops SET stage = :stage, sent_at = now(), picked_at = NULL, lease_expires_at = NULL
    WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'queued'""")


def pick_up(session: Session, drop_ids: Sequence[int], stage: Stage, *, lease_s: float) -> set[int]:
    """A worker takes these drops in this stage: counted, its lease starts. Returns those still queued."""
    return set(session.execute(PICK_UP, {"stage": stage.value, "lease": seconds(lease_s),
                                         "ids": sorted(drop_ids)}).scalars())


def hand_over(session: Session, drop_ids: Sequence[int], stage: Stage) -> None:
    """These drops are sent on to the next stage (commit before sending: the message may be taken at once)."""
    session.execute(HAND_OVER, {"stage": stage.value, "ids": sorted(drop_ids)})


def claim_for_resend(session: Session, *, lease_s: float, idle_stages: Sequence[Stage] = (), limit: int = 1000,
                     all_queued: bool = False) -> list[tuple[int, int]]:
    """Claim queued drops to send again, as (id, retries): those whose lease ran out after a pickup (a retry,
    counted; failed at MAX_RETRIES), those never picked up in an idle stage and sent over a lease ago (lost
    messages), or all queued ones (after the broker lost every message). Each goes back to parsing."""
    expired = and_(Drop.picked_at.is_not(None), Drop.lease_expires_at < func.now())
    lost = and_(Drop.picked_at.is_(None), Drop.stage.in_(idle_stages), Drop.sent_at < func.now() - seconds(lease_s))
    due = select(Drop.id).where(Drop.status == DropStatus.QUEUED)
    if not all_queued:
        due = due.where(or_(expired, lost))
    due = due.order_by(Drop.id).limit(limit).with_for_update(skip_locked=True)
    claimed = session.execute(
        update(Drop).where(Drop.id.in_(due.scalar_subquery()))
        .values(retries=Drop.retries + case((expired, 1), else_=0), stage=Stage.PARSE,
                sent_at=func.now(), picked_at=None, lease_expires_at=None)
        .returning(Drop.id, Drop.retries)
    ).all()
    exhausted = [row.id for row in claimed if row.retries >= MAX_RETRIES]
    if exhausted:
        session.execute(
            update(Drop).where(Drop.id.in_(exhausted)).values(
                status=DropStatus.FAILED, reason=DropReason.RETRIES_EXHAUSTED, finished_at=func.now(),
                detail=f"a worker took it and did not finish, {MAX_RETRIES} times; replay it after a fix",
            )
        )
        log.error("drops failed after repeated deliveries", extra={"drop_ids": exhausted})
    return sorted((row.id, row.retries) for row in claimed if row.retries < MAX_RETRIES)


def idle_stages(app: Celery) -> list[Stage]:
    """The drop stages whose queue is empty: a drop there that no worker picked up lost its message."""
    return [stage for stage in (Stage.PARSE, Stage.STORE) if queue_depth(app, STAGE_QUEUES[stage]) == 0]


def reconcile(runtime: Runtime, *, all_queued: bool = False) -> int:
    """Re-send queued drops whose worker did not finish them in time, or whose message was lost (or all,
    after the broker lost every message)."""
    pipeline = runtime.settings.pipeline
    idle = [] if all_queued else idle_stages(runtime.celery)
    with transaction(runtime.sessions) as session:
        claimed = claim_for_resend(session, lease_s=pipeline.lease_s, idle_stages=idle, all_queued=all_queued)
    if claimed:
        log.warning("re-sent drops a worker did not finish or whose message was lost",
                    extra={"count": len(claimed), "retried": sum(r > 0 for _, r in claimed)})
    dispatch(runtime.celery, [i for i, retries in claimed if not retries], batch_size=pipeline.batch_size)
    dispatch(runtime.celery, [i for i, retries in claimed if retries], batch_size=1)
    return len(claimed)


UNFINISHED = text("SELECT count(*) FROM drops WHERE status = 'queued'")


def unfinished_drops(session: Session) -> int:
    """Drops the pipeline owes, in every stage (what back-pressure counts; the partial index answers it)."""
    return session.execute(UNFINISHED).scalar_one()


REPLAYABLE = (DropStatus.REJECTED, DropStatus.FAILED)


def select_replayable(session: Session, *, statuses: Sequence[DropStatus] = REPLAYABLE, reason: str | None = None,
                      ids: Sequence[int] = ()) -> list[Drop]:
    query = select(Drop).where(Drop.status.in_(statuses)).order_by(Drop.id).with_for_update(skip_locked=True)
    if reason:
        query = query.where(Drop.reason == reason)
    if ids:
        query = query.where(among(Drop.id, ids))
    return list(session.execute(query).scalars())


def file_path(drop: Drop) -> Path:
    """Where the drop's file is on disk (its raw name, when that is not UTF-8)."""
    return Path(os.fsdecode(drop.raw_path)) if drop.raw_path else Path(drop.path)


def missing_bytes(session: Session, drops: Sequence[Drop], max_bytes: int) -> dict[int, str]:
    """Drops whose bytes are not kept (too large or unreadable at intake), re-read from their file when it
    allows; returns why the others cannot be replayed."""
    kept = set(session.execute(
        select(Blob.sha256).where(Blob.sha256.in_([d.sha256 for d in drops if d.sha256]))
    ).scalars())
    problems: dict[int, str] = {}
    for drop in drops:
        if drop.sha256 in kept:
            continue
        read = read_file(file_path(drop), max_bytes)
        if read.data is None:
            why = ("gone" if read.vanished else f"still unreadable ({read.error})" if read.error
                   else "still too large")
            problems[drop.id] = f"bytes not kept and the file is {why}; fix it and keep the file in place"
            continue
        assert read.sha256 is not None  # read, so hashed
        if drop.sha256 is None:  # unreadable when it was taken: its content is known only now
            other = session.execute(select(Drop.id).where(Drop.path == drop.path, Drop.sha256 == read.sha256)
                                    ).scalar()
            if other is not None:
                problems[drop.id] = f"its content was taken since, as drop {other}"
                continue
            drop.sha256, drop.size, drop.mtime_ns = read.sha256, read.size, read.mtime_ns
        elif read.sha256 != drop.sha256:
            problems[drop.id] = "the file changed since; the watcher takes the new content as a new drop"
            continue
        session.execute(insert(Blob).on_conflict_do_nothing(),
                        [{"sha256": read.sha256, "size": read.size, "data": read.data}])
        kept.add(read.sha256)
    return problems


def requeue_for_replay(session: Session, drops: Sequence[Drop], *, max_bytes: int
                       ) -> tuple[list[int], dict[int, str]]:
    """Put rejected or failed drops back to `queued`; returns the ids to dispatch and the ones left, with why."""
    problems = missing_bytes(session, drops, max_bytes)
    ids = [d.id for d in drops if d.id not in problems]
    if ids:
        session.execute(update(Drop).where(among(Drop.id, ids)).values(
            status=DropStatus.QUEUED, reason=None, detail=None, article_id=None, finished_at=None, retries=0,
            stage=Stage.PARSE, sent_at=func.now(), picked_at=None, lease_expires_at=None,
        ))
    return ids, problems


def fail_drops(runtime: Runtime, drop_ids: Sequence[int], error: str) -> None:
    """A permanent error at a task boundary: its drops end `failed` with the error kept (replayable)."""
    with transaction(runtime.sessions) as session:
        session.execute(update(Drop).where(among(Drop.id, drop_ids), Drop.status == DropStatus.QUEUED).values(
            status=DropStatus.FAILED, reason=DropReason.ERROR, detail=error[:2000], finished_at=func.now()))
    log.error("drops failed", extra={"drop_ids": list(drop_ids), "error": error})
