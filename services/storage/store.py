"""Persist drop outcomes: articles and drop states, idempotently and in one transaction per batch.

A redelivered batch changes nothing: only drops still `queued` are touched (locked in id order),
and articles are inserted with ON CONFLICT on their content hash, in hash order so that two
storage processes never deadlock.

Exact duplicates. The first drop of a text to be stored ends `stored`, later ones `duplicate`
(SPEC section 4). The article itself must not depend on that order (SPEC section 3.3), so its
title, date and source come from its *primary* drop, the one with the smallest SHA-256 among
all drops of that text: a later drop that sorts first takes that role over.

Order of work. Everything per drop (decoding sketches, band keys, inserting articles, the drops'
terminal states) happens before the index lock; the lock is taken last, and the advisory lock
always before any committed article's row lock, so storage processes never deadlock on it.
Each statement carries the whole batch in arrays (`unnest`), so a batch costs a fixed number of
round trips and one cached statement text each.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from shared.changes import Change, record_changes
from shared.clusters import IndexBatch, add_keys, index_articles, lock_index, recluster
from shared.db import execute_batch
from shared.enrichment import queue_room
from shared.records import DropOutcome, DropReason, DropStatus, ParsedArticle
from shared.search import CONFIG_OF_LANGUAGE_SQL, DEFAULT_CONFIG, BinaryVector, search_vector_sql
from shared.settings import PIPELINE_VERSION
from shared.similarity import sketch

log = logging.getLogger(__name__)

LOCK_QUEUED = ("SELECT id, sha256 FROM drops WHERE id = ANY(%(ids)b::bigint[]) AND status = 'queued' "
               "ORDER BY id FOR UPDATE")
# Each article is its own cluster from the start (cluster_id = its id), so the index only merges. The search
# vector is the worker's (made in its hand-over, in binary; here only for an outcome without one), written in
# storage's transaction as `english` until enrichment knows the language. The first `room` new articles are
# recorded as sent to enrichment in the same insert (sent after the commit; a later update of each row would
# write all its index entries again), and the feed's `created` changes by the same statement.
INSERT_ARTICLES = f"""
WITH inserted AS (
INSERT INTO articles (id, cluster_id, is_canonical, content_hash, title, published_on, source, source_raw, dateline,
                      paragraphs, body, warnings, encoding, minhash, shingles, primary_sha256, pipeline_version,
                      search_vector, enrich_sent_at)
SELECT n.id, n.id, true, n.h, n.t, n.p, n.s, n.sr, n.d, n.par::jsonb, n.b, n.w::jsonb, n.e, n.m, n.sh, n.ps,
       %(version)s, COALESCE(n.v, {search_vector_sql(f"'{DEFAULT_CONFIG}'::regconfig", "n.t", "n.b")}),
       CASE WHEN n.rank <= %(room)s THEN now() END
FROM (SELECT nextval(pg_get_serial_sequence('articles', 'id')) AS id, row_number() OVER (ORDER BY u.h) AS rank, u.*
      FROM unnest(%(hashes)b::varchar[], %(titles)b::text[], %(dates)b::date[], %(sources)b::text[],
                  %(sources_raw)b::text[], %(datelines)b::text[], %(paragraphs)b::text[], %(bodies)b::text[],
                  %(warnings)b::text[], %(encodings)b::varchar[], %(minhashes)b::bytea[], %(shingles)b::bytea[],
                  %(primaries)b::varchar[], %(vectors)b::tsvector[]) AS u(h, t, p, s, sr, d, par, b, w, e, m, sh, ps, v)
      ORDER BY u.h) n
ON CONFLICT (content_hash) DO NOTHING
RETURNING content_hash, id, enrich_sent_at IS NOT NULL AS sent),
changes AS (INSERT INTO article_changes (article_id, change) SELECT id, '{Change.CREATED.value}' FROM inserted)
SELECT content_hash, id, sent FROM inserted
"""
EXISTING_ARTICLES = "SELECT content_hash, id FROM articles WHERE content_hash = ANY(%(hashes)b::varchar[])"
# FOR NO KEY UPDATE, not FOR UPDATE, wherever articles are locked to be updated (no key column changes): a drop
# that another batch records as a duplicate of the article takes a KEY SHARE lock on it (the foreign key) before
# that batch waits for the index lock, and FOR UPDATE under the index lock then waited for it: a deadlock,
# broken by PostgreSQL after a second (bench_storage saw it in 4 runs of 7 with batches of 200).
PRIMARIES = ("SELECT id, primary_sha256, published_on FROM articles WHERE id = ANY(%(ids)b::bigint[]) "
             "ORDER BY id FOR NO KEY UPDATE")
ADOPT_PRIMARY = f"""
UPDATE articles SET title = %(title)s, published_on = %(published_on)s, source = %(source)s,
       source_raw = %(source_raw)s, dateline = %(dateline)s, paragraphs = %(paragraphs)s::jsonb, body = %(body)s,
       warnings = %(warnings)s::jsonb, encoding = %(encoding)s, primary_sha256 = %(primary_sha256)s,
       search_vector = {search_vector_sql(CONFIG_OF_LANGUAGE_SQL.format(language="language"), "%(title)s",
                                          "%(body)s")}
WHERE id = %(id)s
"""
# Returns, for newsflow_end_to_end_seconds, how long each drop stored took from its discovery.
FINISH_DROPS = """
UPDATE drops d SET status = u.status, reason = u.reason, detail = u.detail, article_id = u.article_id,
       parsed_by = u.parsed_by, finished_at = now()
FROM unnest(%(ids)b::bigint[], %(statuses)b::varchar[], %(reasons)b::varchar[], %(details)b::text[],
            %(article_ids)b::bigint[], %(hosts)b::text[]) AS u(id, status, reason, detail, article_id, parsed_by)
WHERE d.id = u.id
RETURNING CASE WHEN u.status = 'stored' THEN extract(epoch FROM now() - d.discovered_at) END
"""


@dataclass(frozen=True)
class ArticleRow:
    """One new article as the batch insert takes it, with its sketch decoded once."""

    outcome: DropOutcome
    primary_sha256: str
    shingles: bytes
    minhash: bytes
    vector: BinaryVector | None

    @classmethod
    def of(cls, outcome: DropOutcome, primary_sha256: str) -> ArticleRow:
        assert outcome.article is not None
        if outcome.shingles and outcome.minhash:
            shingles, minhash = base64.b64decode(outcome.shingles), base64.b64decode(outcome.minhash)
        else:  # from a worker of an older version: compute it here, still before the lock
            shingles, minhash = sketch(outcome.article.body)
        return cls(outcome, primary_sha256, shingles, minhash, BinaryVector.of(outcome.search_vector))

    @property
    def article(self) -> ParsedArticle:
        assert self.outcome.article is not None  # only outcomes with an article become rows
        return self.outcome.article

    def fields(self) -> dict[str, object]:
        article = self.article
        return {"title": article.title, "published_on": article.published_on, "source": article.source,
                "source_raw": article.source_raw, "dateline": article.dateline,
                "paragraphs": json.dumps(article.paragraphs), "body": article.body,
                "warnings": json.dumps([w.value for w in article.warnings]), "encoding": article.encoding,
                "primary_sha256": self.primary_sha256}


def lock_queued(session: Session, drop_ids: Sequence[int]) -> dict[int, str]:
    """The SHA-256 of each drop in the batch still `queued`, locked for this transaction."""
    return {row.id: row.sha256 or "" for row in execute_batch(session, LOCK_QUEUED, {"ids": sorted(drop_ids)})}


def insert_articles(session: Session, rows: dict[str, ArticleRow], *, enrich_room: int) -> tuple[dict[str, int],
                                                                                         dict[str, bool]]:
    """Article id per content hash; and for the hashes this call inserted (the rest existed already), whether
    the article was recorded as sent to enrichment (the first `enrich_room` are)."""
    if not rows:
        return {}, {}
    fields = [rows[h].fields() for h in sorted(rows)]
    params = {name: [f[key] for f in fields] for name, key in (
        ("titles", "title"), ("dates", "published_on"), ("sources", "source"), ("sources_raw", "source_raw"),
        ("datelines", "dateline"), ("paragraphs", "paragraphs"), ("bodies", "body"), ("warnings", "warnings"),
        ("encodings", "encoding"), ("primaries", "primary_sha256"))}
    inserted = {row.content_hash: row for row in execute_batch(session, INSERT_ARTICLES, params | {
        "hashes": sorted(rows), "minhashes": [rows[h].minhash for h in sorted(rows)],
        "shingles": [rows[h].shingles for h in sorted(rows)],
        "vectors": [rows[h].vector for h in sorted(rows)], "version": PIPELINE_VERSION,
        "room": enrich_room,
    })}
    missing = sorted(set(rows) - set(inserted))
    existing = dict(execute_batch(session, EXISTING_ARTICLES, {"hashes": missing}).all()) if missing else {}
    return {h: row.id for h, row in inserted.items()} | existing, {h: row.sent for h, row in inserted.items()}


def adopt_primaries(session: Session, rows: dict[str, ArticleRow], ids: dict[str, int]) -> None:
    """Existing articles whose new drop sorts before their primary take that drop's metadata (under the
    index lock: a new date can change the cluster's canonical)."""
    if not rows:
        return
    by_id = {ids[h]: row for h, row in rows.items()}
    redated, adopted = [], []
    for article_id, primary, published_on in execute_batch(session, PRIMARIES, {"ids": sorted(by_id)}):
        row = by_id[article_id]
        if primary is not None and row.primary_sha256 >= primary:
            continue
        execute_batch(session, ADOPT_PRIMARY, row.fields() | {"id": article_id})
        adopted.append(article_id)
        if published_on != row.article.published_on:
            redated.append(article_id)
        log.info("article takes the metadata of an earlier-sorting copy", extra={"article_id": article_id})
    record_changes(session, adopted, Change.UPDATED)
    recluster(session, redated)  # the date picks the canonical


def drop_update(outcome: DropOutcome, ids: dict[str, int], stored_by: dict[str, int]) -> dict:
    """The terminal state one outcome gives its drop."""
    base = {"id": outcome.drop_id, "reason": None, "detail": None, "article_id": None, "parsed_by": outcome.parsed_by}
    if outcome.error is not None:
        return base | {"status": DropStatus.FAILED, "reason": DropReason.ERROR, "detail": outcome.error}
    if outcome.rejection is not None or outcome.article is None:
        rejection = outcome.rejection
        return base | {"status": DropStatus.REJECTED, "reason": rejection.reason.value if rejection else "error",
                       "detail": rejection.detail if rejection else "the worker sent no result for this drop"}
    article_id = ids[outcome.article.content_hash]
    if stored_by.get(outcome.article.content_hash) == outcome.drop_id:
        return base | {"status": DropStatus.STORED, "article_id": article_id}
    return base | {"status": DropStatus.DUPLICATE, "article_id": article_id, "reason": DropReason.EXACT_DUPLICATE,
                   "detail": f"same text as article {article_id}"}


def finish_drops(session: Session, updates: list[dict]) -> list[float]:
    """Write the drops' terminal states; returns the seconds from discovery of those stored."""
    lags: list[float] = []
    if updates:
        lags = [float(lag) for lag in execute_batch(session, FINISH_DROPS, {
            "ids": [u["id"] for u in updates], "statuses": [u["status"].value for u in updates],
            "reasons": [u["reason"] for u in updates], "details": [u["detail"] for u in updates],
            "article_ids": [u["article_id"] for u in updates], "hosts": [u["parsed_by"] for u in updates],
        }).scalars() if lag is not None]
    for row in updates:
        log.info("drop %s", row["status"].value, extra={"drop_id": row["id"], "article_id": row["article_id"]})
    return lags


def best_per_text(todo: Sequence[DropOutcome], shas: dict[int, str]) -> dict[str, DropOutcome]:
    """Per text, the batch's drop with the smallest SHA-256 (its metadata is the article's)."""
    best: dict[str, DropOutcome] = {}
    for outcome in todo:
        if outcome.article is not None and outcome.error is None:
            seen = best.get(outcome.article.content_hash)
            if seen is None or shas[outcome.drop_id] < shas[seen.drop_id]:
                best[outcome.article.content_hash] = outcome
    return best


@dataclass(frozen=True)
class Stored:
    """What one batch did: drops per terminal state, the new articles recorded as sent to enrichment (the caller
    sends them after the commit; the others wait in the ledger for room in the queue: shared.enrichment), and
    the seconds from discovery to stored of each drop stored."""

    counts: Counter[str]
    to_enrich: list[int]
    lags_s: list[float]


def store_outcomes(session: Session, outcomes: Sequence[DropOutcome], *, threshold: float,
                   max_unfinished: int) -> Stored:
    """Write one batch of outcomes; at most `max_unfinished` articles wait in the enrichment queue."""
    shas = lock_queued(session, [o.drop_id for o in outcomes])
    todo = sorted((o for o in outcomes if o.drop_id in shas), key=lambda o: o.drop_id)
    if len(todo) < len(outcomes):
        log.info("skipped drops already terminal (redelivery)", extra={"skipped": len(outcomes) - len(todo)})
    best = best_per_text(todo, shas)
    rows = {h: ArticleRow.of(o, shas[o.drop_id]) for h, o in best.items()}
    room = queue_room(session, max_unfinished) if rows else 0
    ids, new = insert_articles(session, rows, enrich_room=room)
    stored_by = {h: best[h].drop_id for h in new}
    updates = [drop_update(o, ids, stored_by) for o in todo]
    lags = finish_drops(session, updates)
    fresh = IndexBatch.of([(ids[h], rows[h].shingles, rows[h].minhash) for h in new])
    add_keys(session, fresh)
    existing = {h: r for h, r in rows.items() if h not in new}
    if fresh.ids or existing:
        lock_index(session)  # held to the commit: from here on, only what must be serialised
        adopt_primaries(session, existing, ids)
        index_articles(session, fresh, threshold)
    return Stored(Counter(row["status"].value for row in updates), sorted(ids[h] for h, sent in new.items() if sent),
                  lags)
