"""Near-duplicate clusters in PostgreSQL: the LSH index, confirmed links, connected components.

Every change to the index and the clusters happens under one transaction-scoped advisory lock,
so two articles stored at the same instant by two storage processes are linked exactly as if
they had come one after the other; since each link is decided by the pair alone (exact Jaccard
of the two bodies), the final clusters do not depend on the order articles arrive in.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Article, ArticleLink, LshBucket
from shared.similarity import band_keys, jaccard, shingles, signature, signature_bytes, signature_from_bytes

log = logging.getLogger(__name__)

CLUSTER_LOCK_KEY = 0x6E657773  # "news": pg_advisory_xact_lock key for the index and the clusters
# A batch has BANDS keys per article: arrays keep each statement one fixed, cached text (an IN list
# or a multi-row VALUES of hundreds of rows costs more to build than to run).
FIND_BUCKETS = text(
    "SELECT b.band, b.bucket, b.article_id FROM lsh_buckets b "
    "JOIN unnest(CAST(:bands AS smallint[]), CAST(:buckets AS bigint[])) AS k(band, bucket) "
    "ON b.band = k.band AND b.bucket = k.bucket"
)
INSERT_BUCKETS = text(
    "INSERT INTO lsh_buckets (band, bucket, article_id) "
    "SELECT * FROM unnest(CAST(:bands AS smallint[]), CAST(:buckets AS bigint[]), CAST(:ids AS bigint[])) "
    "ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class NewArticle:
    id: int
    body: str
    minhash: bytes


def lock_index(session: Session) -> None:
    session.execute(select(func.pg_advisory_xact_lock(CLUSTER_LOCK_KEY)))


def find_candidates(session: Session, keys: dict[int, list[int]]) -> dict[int, set[int]]:
    """LSH candidates of each new article: indexed articles sharing a band key, and new articles of
    the same batch with a smaller id (so each new pair is looked at once). One query per batch."""
    wanted = sorted({(band, key) for article_keys in keys.values() for band, key in enumerate(article_keys)})
    holders: dict[tuple[int, int], set[int]] = defaultdict(set)
    rows = session.execute(FIND_BUCKETS, {"bands": [b for b, _ in wanted], "buckets": [k for _, k in wanted]})
    for band, bucket, article_id in rows:
        holders[(band, bucket)].add(article_id)
    found: dict[int, set[int]] = {}
    for article_id in sorted(keys):
        pairs = list(enumerate(keys[article_id]))
        found[article_id] = set().union(*(holders[p] for p in pairs)) - {article_id}
        for pair in pairs:
            holders[pair].add(article_id)
    return found


def confirm(session: Session, articles: Sequence[NewArticle], found: dict[int, set[int]], threshold: float
            ) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every candidate pair: the links (low id, high id) at or above the threshold."""
    mine = {a.id: shingles(a.body) for a in articles}
    others = set().union(*found.values()) - set(mine) if found else set()
    if others:
        for row in session.execute(select(Article.id, Article.body).where(Article.id.in_(sorted(others)))):
            mine[row.id] = shingles(row.body)
    links = {}
    for article_id, candidate_ids in found.items():
        for other in candidate_ids:
            score = jaccard(mine[article_id], mine[other])
            if score >= threshold:
                links[(min(article_id, other), max(article_id, other))] = score
    return links


def components(links: Iterable[tuple[int, int]]) -> list[set[int]]:
    """Connected components of the linked articles (union-find)."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in links:
        parent[root(a)] = root(b)
    groups: dict[int, set[int]] = defaultdict(set)
    for node in list(parent):
        groups[root(node)].add(node)
    return list(groups.values())


def recluster(session: Session, article_ids: Iterable[int]) -> int:
    """Make the clusters of these articles one, with its canonical: earliest date, then smallest hash."""
    seeds = list(article_ids)
    # Two statements, not one with a subquery: `cluster_id IN (subquery) OR id IN (...)` defeats the
    # indexes and reads every article (measured: 47 ms at 100k articles against 0.04 ms).
    cluster_ids = session.execute(
        select(Article.cluster_id).where(Article.id.in_(seeds), Article.cluster_id.is_not(None))
    ).scalars().all()
    members = session.execute(
        select(Article.id).where((Article.cluster_id.in_(cluster_ids)) | Article.id.in_(seeds))
        .order_by(Article.published_on.asc().nulls_last(), Article.content_hash).with_for_update()
    ).scalars().all()
    canonical = members[0]
    session.execute(
        update(Article).where(Article.id.in_(members))
        .values(cluster_id=canonical, is_canonical=Article.id == canonical)
    )
    return canonical


def index_articles(session: Session, articles: Sequence[NewArticle], threshold: float) -> dict[tuple[int, int], float]:
    """Add newly stored articles to the index, link confirmed near-duplicates, merge their clusters.

    A batch at a time, in the caller's transaction: a handful of statements however many articles.
    """
    if not articles:
        return {}
    lock_index(session)
    keys = {a.id: band_keys(signature_from_bytes(a.minhash)) for a in articles}
    links = confirm(session, articles, find_candidates(session, keys), threshold)
    rows = [(band, key, article_id) for article_id in sorted(keys) for band, key in enumerate(keys[article_id])]
    session.execute(INSERT_BUCKETS, {"bands": [r[0] for r in rows], "buckets": [r[1] for r in rows],
                                     "ids": [r[2] for r in rows]})
    session.execute(update(Article).where(Article.id.in_(sorted(keys)), Article.cluster_id.is_(None))
                    .values(cluster_id=Article.id, is_canonical=True))
    if links:
        session.execute(insert(ArticleLink).values([
            {"article_id": a, "other_id": b, "similarity": score} for (a, b), score in sorted(links.items())
        ]).on_conflict_do_nothing())
        for component in components(links):
            recluster(session, sorted(component))
        log.info("near-duplicates linked", extra={"links": sorted(links)})
    return links


def ensure_signature(session: Session, article: Article) -> bytes:
    """Articles stored before the index existed get their signature computed now."""
    if article.minhash is None:
        article.minhash = signature_bytes(signature(shingles(article.body)))
        session.flush()
    return article.minhash


def rebuild(session: Session, threshold: float, *, page_size: int = 500) -> int:
    """Recompute every link and cluster from the stored signatures (after a threshold change)."""
    lock_index(session)
    session.execute(delete(ArticleLink))
    session.execute(delete(LshBucket))
    session.execute(update(Article).values(cluster_id=None, is_canonical=True))
    last_id, done = 0, 0
    while page := list(session.execute(
        select(Article).where(Article.id > last_id).order_by(Article.id).limit(page_size)
    ).scalars()):
        index_articles(session, [NewArticle(a.id, a.body, ensure_signature(session, a)) for a in page], threshold)
        done += len(page)
        last_id = page[-1].id
        log.info("clusters rebuilt so far", extra={"articles": done})
    return done


def cluster_sizes(session: Session) -> dict[str, int]:
    sizes = select(func.count().label("n")).select_from(Article).group_by(Article.cluster_id).subquery()
    row = session.execute(select(func.count(), func.count().filter(sizes.c.n > 1)).select_from(sizes)).one()
    return {"clusters": row[0], "multi": row[1]}
