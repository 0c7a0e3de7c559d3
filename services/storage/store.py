"""Persist drop outcomes: articles and drop states, idempotently and in one transaction per batch.

A redelivered batch changes nothing: only drops still `queued` are touched (locked in id order),
and articles are inserted with ON CONFLICT on their content hash, in hash order so that two
storage processes never deadlock. A duplicate found here (two copies in flight at once) ends as
`duplicate` exactly like one the worker already recognised.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Article, Drop
from shared.records import DropOutcome, DropStatus, ParsedArticle
from shared.settings import PIPELINE_VERSION

log = logging.getLogger(__name__)
DROPS = Drop.__table__  # Core table: executemany UPDATE ... WHERE id = :b_id


def lock_queued(session: Session, drop_ids: Sequence[int]) -> set[int]:
    rows = session.execute(
        select(Drop.id).where(Drop.id.in_(drop_ids), Drop.status == DropStatus.QUEUED)
        .order_by(Drop.id).with_for_update()
    ).scalars()
    return set(rows)


def article_row(article: ParsedArticle) -> dict[str, object]:
    return {
        "content_hash": article.content_hash, "title": article.title, "published_on": article.published_on,
        "source": article.source, "source_raw": article.source_raw, "dateline": article.dateline,
        "paragraphs": article.paragraphs, "body": article.body, "warnings": [w.value for w in article.warnings],
        "encoding": article.encoding, "pipeline_version": PIPELINE_VERSION,
    }


def insert_articles(session: Session, articles: dict[str, ParsedArticle]) -> tuple[dict[str, int], set[str]]:
    """Article id per content hash, and the hashes this call inserted (the rest existed already)."""
    if not articles:
        return {}, set()
    rows = [article_row(articles[h]) for h in sorted(articles)]
    inserted = dict(session.execute(
        insert(Article).values(rows).on_conflict_do_nothing(index_elements=[Article.content_hash])
        .returning(Article.content_hash, Article.id)
    ).all())
    missing = set(articles) - set(inserted)
    existing = dict(session.execute(
        select(Article.content_hash, Article.id).where(Article.content_hash.in_(missing))
    ).all()) if missing else {}
    return inserted | existing, set(inserted)


def drop_update(outcome: DropOutcome, ids: dict[str, int], new: set[str], stored_by: dict[str, int]) -> dict:
    """The terminal state one outcome gives its drop."""
    base = {"b_id": outcome.drop_id, "reason": None, "detail": None, "article_id": None}
    if outcome.error is not None:
        return base | {"status": DropStatus.FAILED, "reason": "error", "detail": outcome.error}
    if outcome.rejection is not None:
        return base | {"status": DropStatus.REJECTED, "reason": outcome.rejection.reason.value,
                       "detail": outcome.rejection.detail}
    if outcome.article is not None:
        content_hash = outcome.article.content_hash
        article_id = ids[content_hash]
        if content_hash in new and stored_by[content_hash] == outcome.drop_id:
            return base | {"status": DropStatus.STORED, "article_id": article_id}
    else:
        article_id = outcome.duplicate_of
    return base | {"status": DropStatus.DUPLICATE, "article_id": article_id, "reason": "exact_duplicate",
                   "detail": f"same text as article {article_id}"}


def store_outcomes(session: Session, outcomes: Sequence[DropOutcome]) -> Counter[str]:
    """Write one batch; returns how many drops reached each state."""
    open_ids = lock_queued(session, [o.drop_id for o in outcomes])
    todo = sorted((o for o in outcomes if o.drop_id in open_ids), key=lambda o: o.drop_id)
    if len(todo) < len(outcomes):
        log.info("skipped drops already terminal (redelivery)", extra={"skipped": len(outcomes) - len(todo)})
    stored_by: dict[str, int] = {}
    articles: dict[str, ParsedArticle] = {}
    for outcome in todo:
        if outcome.article is not None and outcome.error is None:
            stored_by.setdefault(outcome.article.content_hash, outcome.drop_id)
            articles.setdefault(outcome.article.content_hash, outcome.article)
    ids, new = insert_articles(session, articles)
    updates = [drop_update(o, ids, new, stored_by) for o in todo]
    if updates:
        session.execute(
            update(DROPS).where(DROPS.c.id == bindparam("b_id")).values(finished_at=func.now()), updates
        )
    for row in updates:
        log.info("drop %s", row["status"].value, extra={"drop_id": row["b_id"], "article_id": row["article_id"]})
    return Counter(row["status"].value for row in updates)
