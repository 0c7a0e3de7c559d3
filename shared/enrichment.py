"""The enrichment ledger: which stored articles still need enriching, sending them, and their failures.

Articles are enriched after they are stored (a duplicate never costs NER), with the drops' bookkeeping
(shared/ledger.py): storage records each new article as sent in its insert and sends it after the commit, as
far as the enrichment queue has room (at most `max_unfinished` articles wait in it, so Redis stays bounded
while enrichment lags: the others wait in the ledger and the reconciler sends them as room frees up); the
enricher counts its pickup (`enrich_deliveries`) in its own transaction, which starts the lease. The
reconciler re-sends an article whose lease ran out after a pickup (`enrich_retries`, alone, failed at
MAX_RETRIES) and one never picked up while the enrichment queue is empty (a lost message). An article whose
enrichment raises ends `enrichment_status = failed` with `enrichment_error` kept; it stays stored and served,
and `newsflow replay --enrichment` sends it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from celery import Celery
from sqlalchemy import and_, case, func, or_, select, text, update
from sqlalchemy.orm import Session

from shared.celery_app import queue_depth
from shared.db import among, seconds, transaction
from shared.ledger import MAX_RETRIES, chunked
from shared.models import Article
from shared.queues import Queue, TaskName
from shared.records import EnrichInput, EnrichmentStatus
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def dispatch_enrichment(app: Celery, article_ids: Sequence[int], *, batch_size: int) -> None:
    """Send articles to the enrichers, `batch_size` per message. A message carries ids: the enricher reads the
    texts as it picks them up, so neither storage nor Redis moves article bodies."""
    for batch in chunked(list(article_ids), batch_size):
        app.send_task(TaskName.ENRICH, kwargs={"article_ids": batch})


# Articles sent and not yet picked up: what waits in the enrichment queue (a partial index holds just those).
IN_QUEUE = text("SELECT count(*) FROM articles WHERE enrichment_status = 'pending' AND enrich_picked_at IS NULL "
                "AND enrich_sent_at IS NOT NULL")
def queue_room(session: Session, limit: int) -> int:
    """How many more articles the enrichment queue takes: at most `limit` wait in it (max_unfinished), so
    Redis stays bounded while enrichment lags; the others wait in the ledger, unsent."""
    return max(0, limit - session.execute(IN_QUEUE).scalar_one())


def needs_enrichment(version: str | None):
    """Not enriched yet (pending), or (when a version is given) enriched by another version."""
    pending = Article.enrichment_status == EnrichmentStatus.PENDING
    if version is None:
        return pending
    return pending | ((Article.enrichment_status == EnrichmentStatus.ENRICHED)
                      & Article.enrichment_version.is_distinct_from(version))


PICK_UP = text("""
    UPDATE articles SET enrich_picked_at = now(), enrich_deliveries = enrich_deliveries + 1,
           enrich_lease_expires_at = now() + CAST(:lease AS interval)
    WHERE id = ANY(CAST(:ids AS bigint[])) AND enrichment_status = 'pending'
    RETURNING id, title, body, dateline""")
FAIL = text("""
    UPDATE articles SET enrichment_status = 'failed', enrichment_error = u.error, enrich_picked_at = NULL,
           enrich_lease_expires_at = NULL
    FROM unnest(CAST(:ids AS bigint[]), CAST(:errors AS text[])) AS u(id, error)
    WHERE articles.id = u.id AND articles.enrichment_status = 'pending'""")


def pick_up_enrichment(session: Session, article_ids: Sequence[int], *, lease_s: float) -> list[EnrichInput]:
    """The enricher takes these articles: counted, the lease starts. Returns the texts of those still pending,
    by id."""
    rows = session.execute(PICK_UP, {"lease": seconds(lease_s), "ids": sorted(article_ids)}).all()
    return [EnrichInput(article_id=r.id, title=r.title, body=r.body, dateline=r.dateline)
            for r in sorted(rows, key=lambda r: r.id)]


def fail_enrichment(session: Session, errors: Mapping[int, str]) -> None:
    """Permanent failures: the articles stay stored and served, `failed` with the error kept (replayable)."""
    if errors:
        ids = sorted(errors)
        session.execute(FAIL, {"ids": ids, "errors": [errors[i][:2000] for i in ids]})
        log.error("enrichment failed", extra={"article_ids": ids, "errors": [errors[i] for i in ids]})


def claim_enrichment(session: Session, *, lease_s: float, queue_idle: bool, version: str | None = None,
                     limit: int = 500, all_pending: bool = False) -> list[tuple[int, int]]:
    """Claim articles to send (again), as (article id, retries): pending ones whose lease ran out after a pickup (a
    retry; failed at MAX_RETRIES), pending ones sent and never picked up whose message was lost (sent over a
    lease ago while the queue is empty), every pending one (after the broker lost every message), and with a
    version, those enriched by another (a backfill). SKIP LOCKED makes concurrent claimers safe."""
    pending = Article.enrichment_status == EnrichmentStatus.PENDING
    expired = and_(Article.enrich_picked_at.is_not(None), Article.enrich_lease_expires_at < func.now())
    lost = and_(Article.enrich_picked_at.is_(None), Article.enrich_sent_at < func.now() - seconds(lease_s))
    due = and_(pending, or_(expired, lost) if queue_idle else expired) if not all_pending else pending
    if version is not None:
        due = or_(due, and_(Article.enrichment_status == EnrichmentStatus.ENRICHED,
                            Article.enrichment_version.is_distinct_from(version)))
    claimable = select(Article.id).where(due).order_by(Article.id).limit(limit).with_for_update(skip_locked=True)
    rows = session.execute(
        update(Article).where(Article.id.in_(claimable.scalar_subquery()))
        .values(enrich_retries=Article.enrich_retries + case((and_(pending, expired), 1), else_=0),
                enrichment_status=EnrichmentStatus.PENDING, enrich_sent_at=func.now(), enrich_picked_at=None,
                enrich_lease_expires_at=None)
        .returning(Article.id, Article.enrich_retries)
    ).all()
    exhausted = {r.id: f"the enricher took it and did not finish, {MAX_RETRIES} times; replay it after a fix"
                 for r in rows if r.enrich_retries >= MAX_RETRIES}
    fail_enrichment(session, exhausted)
    return [(r.id, r.enrich_retries) for r in sorted(rows, key=lambda r: r.id) if r.id not in exhausted]


UNSENT = text("""
    UPDATE articles SET enrich_sent_at = now()
    WHERE id IN (SELECT id FROM articles WHERE enrichment_status = 'pending' AND enrich_sent_at IS NULL
                 ORDER BY id LIMIT :room FOR UPDATE SKIP LOCKED)
    RETURNING id""")


def claim_unsent(session: Session, room: int) -> list[int]:
    """Articles waiting in the ledger for room in the enrichment queue (oldest first), up to `room`."""
    return sorted(session.execute(UNSENT, {"room": room}).scalars()) if room else []


def reconcile_enrichment(runtime: Runtime, *, version: str | None = None, limit: int = 500,
                         all_pending: bool = False) -> int:
    """Send articles whose enrichment was not finished in time or whose message was lost (or, with a
    version, is outdated), then those waiting for room in the queue, as far as it has room. An article
    re-sent after a pickup goes alone, so one that kills the enricher does not take a batch down again."""
    idle = all_pending or queue_depth(runtime.celery, Queue.ENRICH) == 0
    with transaction(runtime.sessions) as session:
        claimed = claim_enrichment(session, lease_s=runtime.settings.pipeline.lease_s, queue_idle=idle,
                                   version=version, limit=limit, all_pending=all_pending)
        room = queue_room(session, runtime.settings.pipeline.max_unfinished)
        claimed += [(item, 0) for item in claim_unsent(session, min(room, limit))]
    batch_size = runtime.settings.pipeline.batch_size
    dispatch_enrichment(runtime.celery, [item for item, retries in claimed if not retries], batch_size=batch_size)
    dispatch_enrichment(runtime.celery, [item for item, retries in claimed if retries], batch_size=1)
    if claimed and version is None:
        log.warning("re-sent articles whose enrichment was not finished or whose message was lost",
                    extra={"count": len(claimed), "retried": sum(r > 0 for _, r in claimed)})
    return len(claimed)


REQUEUE = text("""
    UPDATE articles SET enrichment_status = 'pending', enrichment_error = NULL, enrich_retries = 0,
           enrich_sent_at = now(), enrich_picked_at = NULL, enrich_lease_expires_at = NULL
    WHERE enrichment_status = 'failed' AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))
    RETURNING id""")


def requeue_failed_enrichment(session: Session, article_ids: Sequence[int] = ()) -> list[int]:
    """Failed enrichments (all, or these articles) back to pending, as sent: the caller sends them."""
    return sorted(session.execute(REQUEUE, {"ids": sorted(article_ids) or None}).scalars())


def failed_enrichments(session: Session, article_ids: Sequence[int]) -> list[tuple[int, str]]:
    rows = session.execute(select(Article.id, Article.enrichment_error).where(
        among(Article.id, article_ids), Article.enrichment_status == EnrichmentStatus.FAILED).order_by(Article.id))
    return [(r.id, r.enrichment_error or "") for r in rows]


def count_unenriched(session: Session, article_ids: Sequence[int] | None = None, version: str | None = None) -> int:
    query = select(func.count()).select_from(Article).where(needs_enrichment(version))
    if article_ids is not None:
        query = query.where(among(Article.id, article_ids))
    return session.execute(query).scalar_one()
