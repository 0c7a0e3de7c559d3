"""Enrichment bookkeeping: which stored articles still need enriching, and sending them.

Articles are enriched after they are stored (a duplicate never costs NER). The enrichment queue is
transport like every other: an article without enrichment after its lease is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db import transaction
from shared.ledger import chunked
from shared.models import Article
from shared.queues import TaskName
from shared.records import EnrichInput
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def dispatch_enrichment(app: Celery, items: Sequence[EnrichInput], *, batch_size: int) -> None:
    for batch in chunked(list(items), batch_size):
        app.send_task(TaskName.ENRICH, kwargs={"items": [i.model_dump(mode="json") for i in batch]})


def needs_enrichment(version: str | None):
    """Never enriched, or (when a version is given) enriched by another version."""
    if version is None:
        return Article.enrichment_version.is_(None)
    return Article.enrichment_version.is_distinct_from(version)


def claim_unenriched(session: Session, *, lease_s: float, version: str | None = None, limit: int = 500
                     ) -> list[EnrichInput]:
    """Claim articles to (re-)enrich whose lease ran out; SKIP LOCKED makes concurrent claimers safe."""
    lease = func.make_interval(0, 0, 0, 0, 0, 0, lease_s)
    # Storage stores each article with a lease already running (it sends the article itself);
    # storing an enrichment clears the lease.
    due = (
        select(Article.id)
        .where(needs_enrichment(version),
               Article.enrich_lease_expires_at.is_(None) | (Article.enrich_lease_expires_at < func.now()))
        .order_by(Article.id).limit(limit).with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(Article).where(Article.id.in_(due.scalar_subquery()))
        .values(enrich_lease_expires_at=func.now() + lease)
        .returning(Article.id, Article.title, Article.body)
    ).all()
    return [EnrichInput(article_id=r.id, title=r.title, body=r.body) for r in sorted(rows, key=lambda r: r.id)]


def reconcile_enrichment(runtime: Runtime, *, version: str | None = None, limit: int = 500) -> int:
    """Send articles whose enrichment is missing (or, with a version, outdated) and not in flight."""
    with transaction(runtime.sessions) as session:
        items = claim_unenriched(session, lease_s=runtime.settings.pipeline.lease_s, version=version, limit=limit)
    dispatch_enrichment(runtime.celery, items, batch_size=runtime.settings.pipeline.batch_size)
    if items and version is None:
        log.warning("re-enqueued articles whose enrichment was lost", extra={"count": len(items)})
    return len(items)


def count_unenriched(session: Session, article_ids: Sequence[int] | None = None, version: str | None = None) -> int:
    query = select(func.count()).select_from(Article).where(needs_enrichment(version))
    if article_ids is not None:
        query = query.where(Article.id.in_(article_ids))
    return session.execute(query).scalar_one()
