"""Persist drop outcomes: articles and drop states, idempotently and in one transaction per batch.

A redelivered batch changes nothing: only drops still `queued` are touched (locked in id order),
and articles are inserted with ON CONFLICT on their content hash, in hash order so that two
storage processes never deadlock.

Exact duplicates. The first drop of a text to be stored ends `stored`, later ones `duplicate`
(SPEC section 4). The article itself must not depend on that order (SPEC section 3.3), so its
title, date and source come from its *primary* drop, the one with the smallest SHA-256 among
all drops of that text: a later drop that sorts first takes that role over.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.clusters import NewArticle, index_articles, recluster
from shared.models import Article, Drop
from shared.records import DropOutcome, DropStatus, EnrichInput
from shared.settings import PIPELINE_VERSION
from shared.similarity import shingles, signature, signature_bytes

log = logging.getLogger(__name__)
DROPS = Drop.__table__  # Core table: executemany UPDATE ... WHERE id = :b_id
METADATA_FIELDS = ("title", "published_on", "source", "source_raw", "dateline", "paragraphs", "body", "warnings",
                   "encoding")


def lock_queued(session: Session, drop_ids: Sequence[int]) -> dict[int, str]:
    """The SHA-256 of each drop in the batch still `queued`, locked for this transaction."""
    rows = session.execute(
        select(Drop.id, Drop.sha256).where(Drop.id.in_(drop_ids), Drop.status == DropStatus.QUEUED)
        .order_by(Drop.id).with_for_update()
    ).all()
    return {row.id: row.sha256 or "" for row in rows}


def minhash_of(outcome: DropOutcome) -> bytes:
    assert outcome.article is not None
    if outcome.minhash:
        return bytes.fromhex(outcome.minhash)
    return signature_bytes(signature(shingles(outcome.article.body)))  # from a worker of an older version


def article_row(outcome: DropOutcome, drop_sha256: str, lease_s: float) -> dict[str, object]:
    article = outcome.article
    assert article is not None
    return {
        "content_hash": article.content_hash, "title": article.title, "published_on": article.published_on,
        "source": article.source, "source_raw": article.source_raw, "dateline": article.dateline,
        "paragraphs": article.paragraphs, "body": article.body, "warnings": [w.value for w in article.warnings],
        "encoding": article.encoding, "pipeline_version": PIPELINE_VERSION, "minhash": minhash_of(outcome),
        "primary_sha256": drop_sha256,
        # Storage sends the article to the enrichers after commit; the lease covers that message.
        "enrich_lease_expires_at": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s),
    }


def insert_articles(session: Session, rows: dict[str, dict[str, object]]) -> tuple[dict[str, int], set[str]]:
    """Article id per content hash, and the hashes this call inserted (the rest existed already)."""
    if not rows:
        return {}, set()
    inserted = dict(session.execute(
        insert(Article).values([rows[h] for h in sorted(rows)])
        .on_conflict_do_nothing(index_elements=[Article.content_hash])
        .returning(Article.content_hash, Article.id)
    ).all())
    missing = set(rows) - set(inserted)
    existing = dict(session.execute(
        select(Article.content_hash, Article.id).where(Article.content_hash.in_(missing))
    ).all()) if missing else {}
    return inserted | existing, set(inserted)


def adopt_primaries(session: Session, rows: dict[str, dict[str, object]], ids: dict[str, int]) -> None:
    """Existing articles whose new drop sorts before their primary take that drop's metadata."""
    if not rows:
        return
    current = session.execute(
        select(Article).where(Article.id.in_([ids[h] for h in rows])).order_by(Article.id).with_for_update()
    ).scalars()
    for article in current:
        row = rows[article.content_hash]
        if article.primary_sha256 is not None and row["primary_sha256"] >= article.primary_sha256:
            continue
        redate = article.published_on != row["published_on"]
        for field in (*METADATA_FIELDS, "primary_sha256"):
            setattr(article, field, row[field])
        session.flush()
        if redate and article.cluster_id is not None:
            recluster(session, [article.id])  # the date picks the canonical
        log.info("article takes the metadata of an earlier-sorting copy", extra={"article_id": article.id})


def drop_update(outcome: DropOutcome, ids: dict[str, int], stored_by: dict[str, int]) -> dict:
    """The terminal state one outcome gives its drop."""
    base = {"b_id": outcome.drop_id, "reason": None, "detail": None, "article_id": None}
    if outcome.error is not None:
        return base | {"status": DropStatus.FAILED, "reason": "error", "detail": outcome.error}
    if outcome.rejection is not None or outcome.article is None:
        rejection = outcome.rejection
        return base | {"status": DropStatus.REJECTED, "reason": rejection.reason.value if rejection else "error",
                       "detail": rejection.detail if rejection else "the worker sent no result for this drop"}
    article_id = ids[outcome.article.content_hash]
    if stored_by.get(outcome.article.content_hash) == outcome.drop_id:
        return base | {"status": DropStatus.STORED, "article_id": article_id}
    return base | {"status": DropStatus.DUPLICATE, "article_id": article_id, "reason": "exact_duplicate",
                   "detail": f"same text as article {article_id}"}


def store_outcomes(session: Session, outcomes: Sequence[DropOutcome], *, threshold: float, lease_s: float = 300.0
                   ) -> tuple[Counter[str], list[EnrichInput]]:
    """Write one batch; returns how many drops reached each state, and the new articles to enrich."""
    shas = lock_queued(session, [o.drop_id for o in outcomes])
    todo = sorted((o for o in outcomes if o.drop_id in shas), key=lambda o: o.drop_id)
    if len(todo) < len(outcomes):
        log.info("skipped drops already terminal (redelivery)", extra={"skipped": len(outcomes) - len(todo)})
    best: dict[str, DropOutcome] = {}  # per text, the batch's drop with the smallest SHA-256
    for outcome in todo:
        if outcome.article is not None and outcome.error is None:
            seen = best.get(outcome.article.content_hash)
            if seen is None or shas[outcome.drop_id] < shas[seen.drop_id]:
                best[outcome.article.content_hash] = outcome
    rows = {h: article_row(o, shas[o.drop_id], lease_s) for h, o in best.items()}
    ids, new = insert_articles(session, rows)
    adopt_primaries(session, {h: r for h, r in rows.items() if h not in new}, ids)
    index_articles(session, [NewArticle(ids[h], best[h].article.body, rows[h]["minhash"]) for h in sorted(new)],
                   threshold)
    stored_by = {h: best[h].drop_id for h in new}
    updates = [drop_update(o, ids, stored_by) for o in todo]
    if updates:
        session.execute(
            update(DROPS).where(DROPS.c.id == bindparam("b_id")).values(finished_at=func.now()), updates
        )
    for row in updates:
        log.info("drop %s", row["status"].value, extra={"drop_id": row["b_id"], "article_id": row["article_id"]})
    to_enrich = [EnrichInput(article_id=ids[h], title=best[h].article.title, body=best[h].article.body)
                 for h in sorted(new)]
    return Counter(row["status"].value for row in updates), to_enrich
