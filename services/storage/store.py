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

from shared.clusters import NewArticle, index_articles
from shared.models import Article, Drop
from shared.records import DropOutcome, DropStatus
from shared.settings import PIPELINE_VERSION
from shared.similarity import shingles, signature, signature_bytes

log = logging.getLogger(__name__)
DROPS = Drop.__table__  # Core table: executemany UPDATE ... WHERE id = :b_id


def lock_queued(session: Session, drop_ids: Sequence[int]) -> set[int]:
    rows = session.execute(
        select(Drop.id).where(Drop.id.in_(drop_ids), Drop.status == DropStatus.QUEUED)
        .order_by(Drop.id).with_for_update()
    ).scalars()
    return set(rows)


def minhash_of(outcome: DropOutcome) -> bytes:
    assert outcome.article is not None
    if outcome.minhash:
        return bytes.fromhex(outcome.minhash)
    return signature_bytes(signature(shingles(outcome.article.body)))  # from a worker of an older version


def article_row(outcome: DropOutcome) -> dict[str, object]:
    article = outcome.article
    assert article is not None
    return {
        "content_hash": article.content_hash, "title": article.title, "published_on": article.published_on,
        "source": article.source, "source_raw": article.source_raw, "dateline": article.dateline,
        "paragraphs": article.paragraphs, "body": article.body, "warnings": [w.value for w in article.warnings],
        "encoding": article.encoding, "pipeline_version": PIPELINE_VERSION, "minhash": minhash_of(outcome),
    }


def insert_articles(session: Session, firsts: dict[str, DropOutcome]) -> tuple[dict[str, int], set[str]]:
    """Article id per content hash, and the hashes this call inserted (the rest existed already)."""
    if not firsts:
        return {}, set()
    rows = [article_row(firsts[h]) for h in sorted(firsts)]
    inserted = dict(session.execute(
        insert(Article).values(rows).on_conflict_do_nothing(index_elements=[Article.content_hash])
        .returning(Article.content_hash, Article.id)
    ).all())
    missing = set(firsts) - set(inserted)
    existing = dict(session.execute(
        select(Article.content_hash, Article.id).where(Article.content_hash.in_(missing))
    ).all()) if missing else {}
    return inserted | existing, set(inserted)


def drop_update(outcome: DropOutcome, ids: dict[str, int], new: set[str], firsts: dict[str, DropOutcome]) -> dict:
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
        if content_hash in new and firsts[content_hash] is outcome:
            return base | {"status": DropStatus.STORED, "article_id": article_id}
    else:
        article_id = outcome.duplicate_of
    return base | {"status": DropStatus.DUPLICATE, "article_id": article_id, "reason": "exact_duplicate",
                   "detail": f"same text as article {article_id}"}


def store_outcomes(session: Session, outcomes: Sequence[DropOutcome], *, threshold: float) -> Counter[str]:
    """Write one batch; returns how many drops reached each state."""
    open_ids = lock_queued(session, [o.drop_id for o in outcomes])
    todo = sorted((o for o in outcomes if o.drop_id in open_ids), key=lambda o: o.drop_id)
    if len(todo) < len(outcomes):
        log.info("skipped drops already terminal (redelivery)", extra={"skipped": len(outcomes) - len(todo)})
    firsts: dict[str, DropOutcome] = {}  # the drop that carries each new text first stores it
    for outcome in todo:
        if outcome.article is not None and outcome.error is None:
            firsts.setdefault(outcome.article.content_hash, outcome)
    ids, new = insert_articles(session, firsts)
    index_articles(session, [NewArticle(ids[h], firsts[h].article.body, minhash_of(firsts[h])) for h in sorted(new)],
                   threshold)
    updates = [drop_update(o, ids, new, firsts) for o in todo]
    if updates:
        session.execute(
            update(DROPS).where(DROPS.c.id == bindparam("b_id")).values(finished_at=func.now()), updates
        )
    for row in updates:
        log.info("drop %s", row["status"].value, extra={"drop_id": row["b_id"], "article_id": row["article_id"]})
    return Counter(row["status"].value for row in updates)
