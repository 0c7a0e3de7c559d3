"""Near-duplicate clusters in PostgreSQL: the LSH index, confirmed links, connected components.

Every change to the index and the clusters happens under one transaction-scoped advisory lock,
so two articles stored at the same instant by two storage processes are linked exactly as if
they had come one after the other; since each link is decided by the pair alone (exact Jaccard
of the two shingle sets), the final clusters do not depend on the order articles arrive in.

The lock is the one thing every storage process shares, so nothing per-article that can be done
before it is done under it: the worker made the shingle set and the signature, storage derives
the band keys and inserts them before it locks, and under the lock there are a fixed number of
statements per batch (look up the keys, load the candidates' shingle sets, insert links, merge
clusters) and a numpy intersection per candidate pair.

Inserting the keys before the lock loses no pair: of two transactions, the one that takes the
lock second looks its keys up after the first has committed, so it sees the first's keys (and
the first, which could not see the second's uncommitted keys, did not link the pair: it is
linked once).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.changes import Change, record_changes
from shared.db import execute_batch, int_array
from shared.rekey import rekey_articles
from shared.similarity import BANDS, band_keys, jaccard, shingles_from_bytes, signature_from_bytes, sketch

log = logging.getLogger(__name__)

CLUSTER_LOCK_KEY = 0x6E657773  # "news": pg_advisory_xact_lock key for the index and the clusters
LOCKED_AT = "index_locked_at"  # session.info key: perf_counter() when this transaction took the lock
# Statements carry the whole batch in arrays, sent in binary (shared.db.execute_batch): one fixed,
# cached text each, however many articles (an IN list or a multi-row VALUES of hundreds of rows costs
# more to build than to run).
# The batch's band keys go in before the lock (no other transaction can see them before the commit);
# under it, one look-up finds every article sharing a key: those other transactions committed, and the
# batch's own (each pair within it once, from its higher id).
# The keys go as one array, article after article, each article's BANDS keys in band order; the band and the
# article of each key are its position (building three text arrays of 32 rows an article took about 5 % of
# storage's Python time).
BATCH_KEYS = (
    "SELECT ((k.n - 1) %% %(bands)s)::smallint AS band, k.bucket, (%(ids)s::bigint[])[(k.n - 1) / %(bands)s + 1] AS id "
    "FROM unnest(%(buckets)s::bigint[]) WITH ORDINALITY AS k(bucket, n)"
)
INSERT_KEYS = f"INSERT INTO lsh_buckets (band, bucket, article_id) SELECT * FROM ({BATCH_KEYS}) k"
FIND_CANDIDATES = (
    f"SELECT DISTINCT k.id, b.article_id FROM ({BATCH_KEYS}) k "
    "JOIN lsh_buckets b ON b.band = k.band AND b.bucket = k.bucket WHERE b.article_id <> k.id"
)
LOAD_SHINGLES = "SELECT id, shingles FROM articles WHERE id = ANY(%(ids)b::bigint[])"
INSERT_LINKS = (
    "INSERT INTO article_links (article_id, other_id, similarity) "
    "SELECT * FROM unnest(%(ids)b::bigint[], %(others)b::bigint[], %(scores)b::float8[]) ON CONFLICT DO NOTHING"
)
# Two statements, not one with `cluster_id IN (subquery) OR id IN (...)`, which defeats the indexes
# and reads every article (measured: 47 ms at 100k articles against 0.04 ms).
CLUSTERS_OF = "SELECT DISTINCT cluster_id FROM articles WHERE id = ANY(%(ids)b::bigint[])"
MEMBERS_OF = (
    "SELECT id, cluster_id, is_canonical, published_on, content_hash FROM articles "
    "WHERE cluster_id = ANY(%(clusters)b::bigint[]) ORDER BY id FOR NO KEY UPDATE"
)
SET_CLUSTERS = (
    "UPDATE articles a SET cluster_id = u.cluster_id, is_canonical = (u.id = u.cluster_id) "
    "FROM unnest(%(ids)b::bigint[], %(clusters)b::bigint[]) AS u(id, cluster_id) WHERE a.id = u.id"
)


@dataclass(frozen=True)
class IndexBatch:
    """New articles as the index takes them, everything per article prepared before the lock: shingle
    sets, and band keys (for the whole batch at once) in the statements' arrays."""

    ids: list[int]
    shingles: dict[int, np.ndarray]
    key_arrays: dict[str, str | int]

    @classmethod
    def of(cls, sketches: Sequence[tuple[int, bytes, bytes]]) -> IndexBatch:
        """From (article id, shingle set, signature) as stored."""
        ordered = sorted(sketches)
        ids = [i for i, _, _ in ordered]
        keys = band_keys(signature_from_bytes(b"".join(m for _, _, m in ordered)).reshape(len(ordered), -1)
                         ) if ordered else np.empty((0, BANDS), dtype=np.int64)
        arrays: dict[str, str | int] = {"ids": int_array(ids), "bands": BANDS,
                                        "buckets": int_array(keys.ravel().tolist())}
        return cls(ids, {i: shingles_from_bytes(s) for i, s, _ in ordered}, arrays)


def lock_index(session: Session) -> None:
    """Take the index lock for the rest of the transaction (and note when, for the lock-held figure)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLUSTER_LOCK_KEY})
    session.info[LOCKED_AT] = time.perf_counter()


def add_keys(session: Session, batch: IndexBatch) -> None:
    """Put the batch's band keys in the index: before the lock (index_articles looks them up under it)."""
    if batch.ids:
        execute_batch(session, INSERT_KEYS, batch.key_arrays)


def find_candidates(session: Session, batch: IndexBatch) -> dict[int, set[int]]:
    """Each new article's candidates: the articles sharing a band key with it, indexed by transactions that
    committed, or of the batch with a smaller id (so each pair once)."""
    own = set(batch.ids)
    found: dict[int, set[int]] = {i: set() for i in batch.ids}
    for article_id, candidate in execute_batch(session, FIND_CANDIDATES, batch.key_arrays):
        if candidate < article_id or candidate not in own:
            found[article_id].add(candidate)
    return found


def confirm(session: Session, batch: IndexBatch, found: dict[int, set[int]], threshold: float
            ) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every candidate pair, from stored shingle sets: the links (low id, high id) at or
    above the threshold."""
    sets = dict(batch.shingles)
    others = sorted(set().union(*found.values()) - set(sets)) if found else []
    if others:
        for article_id, data in execute_batch(session, LOAD_SHINGLES, {"ids": others}):
            sets[article_id] = shingles_from_bytes(data)
    links = {}
    for article_id, candidate_ids in found.items():
        for other in candidate_ids & sets.keys():  # a key of a deleted article names nothing
            score = jaccard(sets[article_id], sets[other])
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


def recluster(session: Session, article_ids: Iterable[int], links: Iterable[tuple[int, int]] = ()) -> None:
    """Merge the clusters of these articles along the new links and give each its canonical (earliest
    date, then smallest hash). Three statements, however many clusters the batch touches."""
    links = list(links)
    seeds = sorted(set(article_ids) | {a for pair in links for a in pair})
    if not seeds:
        return
    clusters = execute_batch(session, CLUSTERS_OF, {"ids": seeds}).scalars().all()
    members = execute_batch(session, MEMBERS_OF, {"clusters": sorted(clusters)}).all()
    edges = [*links, *((m.id, m.cluster_id) for m in members)]
    by_id = {m.id: m for m in members}
    ids, canonicals = [], []
    for component in components(edges):
        canonical = min(component, key=lambda i: (by_id[i].published_on is None, by_id[i].published_on or date.min,
                                                  by_id[i].content_hash))
        changed = [i for i in sorted(component)
                   if (by_id[i].cluster_id, by_id[i].is_canonical) != (canonical, i == canonical)]
        ids += changed
        canonicals += [canonical] * len(changed)
    if ids:
        execute_batch(session, SET_CLUSTERS, {"ids": ids, "clusters": canonicals})
        record_changes(session, ids, Change.CLUSTERED)


def index_articles(session: Session, batch: IndexBatch, threshold: float) -> dict[tuple[int, int], float]:
    """Link newly stored articles (each already its own cluster, its keys added: add_keys) to their confirmed
    near-duplicates, and merge their clusters. Takes the index lock if the transaction does not hold it."""
    if not batch.ids:
        return {}
    if LOCKED_AT not in session.info:
        lock_index(session)
    links = confirm(session, batch, find_candidates(session, batch), threshold)
    if links:
        ordered = sorted(links.items())
        execute_batch(session, INSERT_LINKS, {
            "ids": [a for (a, _), _ in ordered], "others": [b for (_, b), _ in ordered],
            "scores": [s for _, s in ordered]})
        recluster(session, [], links)
        log.info("near-duplicates linked", extra={"links": sorted(links)})
    return links


def rebuild(session: Session, threshold: float, *, page_size: int = 500) -> int:
    """Give every article the current exact key (merging articles that turn out to be one text), then
    recompute every link and cluster from the stored sketches (after a threshold change); articles without a
    shingle set or signature get them from their body now."""
    lock_index(session)
    session.execute(text("CREATE TEMP TABLE clusters_before ON COMMIT DROP AS "
                         "SELECT id, cluster_id, is_canonical FROM articles"))
    rekeyed, merged = rekey_articles(session, page_size=page_size)
    if rekeyed or merged:
        log.warning("exact keys updated", extra={"rekeyed": rekeyed, "merged": merged})
    session.execute(text("DELETE FROM article_links"))
    session.execute(text("DELETE FROM lsh_buckets"))
    session.execute(text("UPDATE articles SET cluster_id = id, is_canonical = true"))
    last_id, done = 0, 0
    while page := session.execute(
        text("SELECT id, body, shingles, minhash FROM articles WHERE id > :last ORDER BY id LIMIT :n"),
        {"last": last_id, "n": page_size},
    ).all():
        batch = IndexBatch.of([(row.id, *ensure_sketch(session, row)) for row in page])
        add_keys(session, batch)
        index_articles(session, batch, threshold)
        done += len(page)
        last_id = page[-1].id
        log.info("clusters rebuilt so far", extra={"articles": done})
    # The pages recorded changes against the reset above; the feed gets those against the clusters before.
    session.execute(text("DELETE FROM article_changes WHERE xid = pg_current_xact_id() AND change = :c"),
                    {"c": Change.CLUSTERED.value})
    session.execute(text("INSERT INTO article_changes (article_id, change) SELECT a.id, :c FROM articles a "
                         "JOIN clusters_before b USING (id) "
                         "WHERE (a.cluster_id, a.is_canonical) IS DISTINCT FROM (b.cluster_id, b.is_canonical) "
                         "ORDER BY a.id"), {"c": Change.CLUSTERED.value})
    return done


def ensure_sketch(session: Session, row) -> tuple[bytes, bytes]:
    """An article's (shingle set, signature); computed and stored now if it has none (older articles)."""
    if row.shingles is not None and row.minhash is not None:
        return row.shingles, row.minhash
    shingles, minhash = sketch(row.body)
    session.execute(text("UPDATE articles SET shingles = :s, minhash = :m WHERE id = :id"),
                    {"s": shingles, "m": minhash, "id": row.id})
    return shingles, minhash


def cluster_sizes(session: Session) -> dict[str, int]:
    row = session.execute(text(
        "SELECT count(*), count(*) FILTER (WHERE n > 1) FROM (SELECT count(*) AS n FROM articles GROUP BY cluster_id) s"
    )).one()
    return {"clusters": row[0], "multi": row[1]}
