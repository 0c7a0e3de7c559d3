"""Near-duplicate clusters: the same partition and canonicals whatever the order and concurrency,
and equal to the brute-force truth."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text

from services.storage.store import PRIMARIES, store_outcomes
from services.worker.stage import load_queued, parse_batch
from shared.clusters import lock_index, rebuild, recluster
from shared.db import execute_batch, transaction
from shared.intake import read_file, register_reads
from shared.ledger import dispatch
from shared.models import Article, Drop
from shared.records import DropStatus
from shared.runtime import Runtime
from tests.conftest import PIPELINE_NODES
from tests.families import Drop as FamilyDrop
from tests.families import Truth, brute_force, build_families, precision_recall
from tests.support import ServiceProcess, TestServers, truncate_all, wait_for_drops

pytestmark = pytest.mark.integration

THRESHOLD = 0.8
FAMILIES = 12
MAX_BYTES = 1024 * 1024

def write_drops(folder: Path, drops: list[FamilyDrop]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    for drop in drops:
        (folder / drop.name).write_bytes(drop.data)
    return [folder / d.name for d in drops]

def register(sessions, paths: list[Path]) -> list[int]:
    with transaction(sessions) as session:
        registered = register_reads(session, [read_file(p, MAX_BYTES) for p in paths], host=socket.gethostname(),
                                    max_bytes=MAX_BYTES)
    return [r.drop_id for r in registered]

def observed(sessions) -> Truth:
    with sessions() as session:
        rows = session.execute(select(Article.content_hash, Article.cluster_id, Article.is_canonical, Article.title,
                                      Article.published_on)).all()
    groups: dict[int, set[str]] = {}
    canonical_by_cluster: dict[int, list[str]] = {}
    for content_hash, cluster_id, is_canonical, _, _ in rows:
        groups.setdefault(cluster_id, set()).add(content_hash)
        if is_canonical:
            canonical_by_cluster.setdefault(cluster_id, []).append(content_hash)
    clusters = {cid: frozenset(members) for cid, members in groups.items()}
    assert all(len(c) == 1 for c in canonical_by_cluster.values()), "one canonical per cluster"
    metadata = {row.content_hash: (row.title, row.published_on) for row in rows}
    return Truth(set(clusters.values()), {clusters[cid]: c[0] for cid, c in canonical_by_cluster.items()}, metadata)

def one_worker_in_sorted_order(sessions, paths: list[Path]) -> Truth:
    for path in sorted(paths):
        ids = register(sessions, [path])
        with sessions() as session:
            outcomes = parse_batch(load_queued(session, ids), max_bytes=MAX_BYTES)
        with transaction(sessions) as session:
            store_outcomes(session, outcomes, threshold=THRESHOLD, max_unfinished=0)
    return observed(sessions)

def test_clusters_are_order_free_race_free_and_true(pipeline: TestServers, clean_db: None, sessions,
                                                    tmp_path: Path) -> None:
    drops = build_families(FAMILIES)
    truth = brute_force(drops, THRESHOLD)
    assert any(len(c) > 2 for c in truth.clusters), "the families must hold real near-duplicates"
    paths = write_drops(tmp_path / "families", drops)

    shuffled = random.Random(1).sample(paths, k=len(paths))
    runtime = Runtime(pipeline.settings())
    with ServiceProcess("worker", pipeline, "--concurrency", "4", "-n", "extra-worker@%h"), \
            ServiceProcess("storage", pipeline, "--concurrency", "2", "-n", "extra-storage@%h"):
        pipeline.wait_for_workers(PIPELINE_NODES + 2)
        ids = register(sessions, shuffled)
        for start in range(0, len(ids), 3):  # small batches in shuffled order: many at the same instant
            dispatch(runtime.celery, ids[start:start + 3], batch_size=3)
        drops_done = wait_for_drops(sessions, len(paths))
    concurrent = observed(sessions)

    truncate_all(sessions)
    sequential = one_worker_in_sorted_order(sessions, paths)

    assert {d.status for d in drops_done} == {DropStatus.STORED, DropStatus.DUPLICATE}
    assert concurrent.clusters == sequential.clusters == truth.clusters
    assert concurrent.canonicals == sequential.canonicals == truth.canonicals
    assert concurrent.metadata == sequential.metadata == truth.metadata
    precision, recall = precision_recall(concurrent.clusters, truth.clusters)
    print(f"\npairwise precision {precision:.3f}, recall {recall:.3f} over {len(truth.clusters)} clusters")
    assert (precision, recall) == (1.0, 1.0)

def test_rebuild_at_another_threshold_recomputes_clusters(pipeline: TestServers, clean_db: None, sessions,
                                                          tmp_path: Path) -> None:
    drops = build_families(3, seed=11)
    paths = write_drops(tmp_path / "families", drops)
    at_default = one_worker_in_sorted_order(sessions, paths)
    assert at_default.clusters == brute_force(drops, THRESHOLD).clusters

    with transaction(sessions) as session:
        rebuild(session, 0.99)
    assert observed(sessions).clusters == brute_force(drops, 0.99).clusters != at_default.clusters

    with transaction(sessions) as session:
        rebuild(session, THRESHOLD)
    assert observed(sessions) == at_default

def test_exact_duplicate_drop_names_its_article(pipeline: TestServers, clean_db: None, sessions,
                                                tmp_path: Path) -> None:
    drops = build_families(1, seed=3)
    paths = write_drops(tmp_path / "families", drops)
    one_worker_in_sorted_order(sessions, paths)
    with sessions() as session:
        by_name = {Path(d.path).name: d for d in session.execute(select(Drop)).scalars()}
    original = next(d for n, d in by_name.items() if n.endswith("-original.txt"))
    for suffix in ("-syndicated.txt", "-utf16-crlf.txt", "-boilerplate.txt"):
        copy = next(d for n, d in by_name.items() if n.endswith(suffix))
        stored = original if original.status is DropStatus.STORED else copy
        assert {original.status, copy.status} <= {DropStatus.STORED, DropStatus.DUPLICATE}
        assert copy.article_id == original.article_id == stored.article_id

def test_two_near_duplicates_stored_at_the_same_instant_end_in_one_cluster(
        pipeline: TestServers, clean_db: None, sessions, tmp_path: Path) -> None:
    """Two storage transactions interleaved on purpose: the second must wait for the first and link."""

    family = build_families(1, seed=5)
    original, correction = (next(d for d in family if d.name.endswith(s)) for s in ("-original.txt", "-correction.txt"))
    ids = register(sessions, write_drops(tmp_path / "race", [original, correction]))
    with sessions() as session:
        first, second = parse_batch(load_queued(session, ids), max_bytes=MAX_BYTES)

    first_stored, release = threading.Event(), threading.Event()

    def store_first() -> None:
        with transaction(sessions) as session:
            store_outcomes(session, [first], threshold=THRESHOLD, max_unfinished=0)
            first_stored.set()
            release.wait(10)  # hold the transaction open while the second one starts

    thread = threading.Thread(target=store_first)
    thread.start()
    assert first_stored.wait(10)
    second_done = threading.Event()

    def store_second() -> None:
        with transaction(sessions) as session:
            store_outcomes(session, [second], threshold=THRESHOLD, max_unfinished=0)
        second_done.set()

    other = threading.Thread(target=store_second)
    other.start()
    try:
        assert not second_done.wait(1.0), "the second transaction must wait for the first"
    finally:
        release.set()
        thread.join(10)
        other.join(10)

    result = observed(sessions)
    assert len(result.clusters) == 1 and len(next(iter(result.clusters))) == 2


def test_a_duplicate_drop_recorded_before_the_index_lock_does_not_block_the_holder(
        pipeline: TestServers, clean_db: None, sessions, tmp_path: Path) -> None:
    """A batch records a drop as a duplicate of article X (its foreign key takes a KEY SHARE lock on X) and then
    waits for the index lock; the transaction that holds the lock must be able to lock X's cluster and X itself,
    or each waits for the other until PostgreSQL breaks the deadlock."""
    paths = write_drops(tmp_path / "families", build_families(1, seed=5))
    one_worker_in_sorted_order(sessions, paths)
    with sessions() as session:
        article_id, drop_id = session.execute(text(
            "SELECT a.id, d.id FROM articles a, drops d WHERE d.article_id <> a.id LIMIT 1")).one()
    with transaction(sessions) as duplicate:  # the batch before its index lock, left open
        duplicate.execute(text("UPDATE drops SET article_id = :a WHERE id = :d"), {"a": article_id, "d": drop_id})
        with transaction(sessions) as holder:
            holder.execute(text("SET LOCAL lock_timeout = '5s'"))  # a wait fails the test instead of hanging
            lock_index(holder)
            recluster(holder, [article_id])
            assert execute_batch(holder, PRIMARIES, {"ids": [article_id]}).all()
        duplicate.rollback()
