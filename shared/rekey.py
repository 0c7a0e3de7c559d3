"""Give stored articles the current exact-duplicate key (shared.text.content_hash), merging those whose keys
now collide: a step of `newsflow clusters rebuild`, run after the key's definition changed (paragraph breaks
folded, for instance), under the index lock and in the rebuild's transaction.

Of two articles that turn out to be one text, the one whose primary drop has the smaller SHA-256 stays (its
metadata is the text's, SPEC section 3.3); the other's drops point to it, its `stored` drop becomes a
`duplicate`, so every drop keeps its lineage; the other article is deleted with its links, entities and
index keys (the rebuild re-indexes every article next).
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.changes import Change, record_changes
from shared.text import content_hash

log = logging.getLogger(__name__)

PAGE = text("SELECT id, content_hash, paragraphs, primary_sha256 FROM articles WHERE id > :last ORDER BY id "
            "LIMIT :n")
HOLDER = text("SELECT id, primary_sha256 FROM articles WHERE content_hash = :key")
SET_KEY = text("UPDATE articles SET content_hash = :key WHERE id = :id")
MOVE_DROPS = text("""
    UPDATE drops SET article_id = :keep,
           status = CASE WHEN status = 'stored' THEN 'duplicate' ELSE status END,
           reason = CASE WHEN status = 'stored' THEN 'exact_duplicate' ELSE reason END,
           detail = CASE WHEN status = 'stored' THEN :detail ELSE detail END
    WHERE article_id = :gone""")
DELETE_ARTICLE = text("DELETE FROM articles WHERE id = :gone")
DELETE_KEYS = text("DELETE FROM lsh_buckets WHERE article_id = :gone")


def rekey_articles(session: Session, *, page_size: int = 500) -> tuple[int, int]:
    """Returns (articles given a new key, articles merged into another)."""
    rekeyed = merged = last = 0
    while page := session.execute(PAGE, {"last": last, "n": page_size}).all():
        last = page[-1].id
        for row in page:
            key = content_hash(row.paragraphs)
            if key == row.content_hash:
                continue
            holder = session.execute(HOLDER, {"key": key}).first()
            if holder is None:
                session.execute(SET_KEY, {"key": key, "id": row.id})
                rekeyed += 1
                continue
            keep, gone = sorted([holder, row], key=lambda a: (a.primary_sha256 or "", a.id))
            session.execute(MOVE_DROPS, {"keep": keep.id, "gone": gone.id,
                                         "detail": f"same text as article {keep.id} (merged when the exact key "
                                                   "changed)"})
            session.execute(DELETE_KEYS, {"gone": gone.id})
            session.execute(DELETE_ARTICLE, {"gone": gone.id})
            if keep.id == row.id:
                session.execute(SET_KEY, {"key": key, "id": keep.id})
            record_changes(session, [keep.id], Change.UPDATED)  # it carries the other's drops now
            merged += 1
            log.info("articles merged: one text under the current exact key", extra={"kept": keep.id,
                                                                                    "merged": gone.id})
    return rekeyed, merged
