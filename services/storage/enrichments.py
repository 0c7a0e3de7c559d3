"""Persist enrichments: article fields, entities once per (type, name), a link per article with its count.

Idempotent: an article's entity links are replaced as a whole, so a redelivered or re-run
enrichment leaves exactly one set of links behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Article, ArticleEntity, Entity
from shared.records import Enrichment

log = logging.getLogger(__name__)


def entity_ids(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Id per (type, name), creating the entities not seen before (in key order: no deadlocks)."""
    if not keys:
        return {}
    session.execute(insert(Entity).values([{"type": t, "name": n} for t, n in sorted(keys)])
                    .on_conflict_do_nothing(constraint="uq_entities_type_name"))
    rows = session.execute(
        select(Entity.type, Entity.name, Entity.id).where(tuple_(Entity.type, Entity.name).in_(sorted(keys)))
    ).all()
    return {(r.type, r.name): r.id for r in rows}


def store_enrichments(session: Session, enrichments: Sequence[Enrichment]) -> int:
    """Write one batch; articles deleted meanwhile are skipped. Returns how many were written."""
    by_id = {e.article_id: e for e in enrichments}
    present = set(session.execute(
        select(Article.id).where(Article.id.in_(by_id)).order_by(Article.id).with_for_update()
    ).scalars())
    todo = [by_id[i] for i in sorted(present)]
    if not todo:
        return 0
    ids = entity_ids(session, {(m.type, m.text) for e in todo for m in e.entities})
    session.execute(delete(ArticleEntity).where(ArticleEntity.article_id.in_(present)))
    links = [{"article_id": e.article_id, "entity_id": ids[(m.type, m.text)], "count": m.count}
             for e in todo for m in e.entities]
    if links:
        session.execute(insert(ArticleEntity).values(links).on_conflict_do_nothing())
    for e in todo:
        session.execute(update(Article).where(Article.id == e.article_id).values(
            language=e.language, word_count=e.word_count, reading_time_min=e.reading_time_min, summary=e.summary,
            keywords=e.keywords, countries=e.countries, tone=e.tone, enrichment_version=e.version,
            enriched_at=func.now(), enrich_lease_expires_at=None,
        ))
    log.info("enrichments stored", extra={"articles": len(todo), "entities": len(links)})
    return len(todo)
