"""The ledger and the storage step against real PostgreSQL: idempotent under redelivery and races."""

import hashlib
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import func, select, text

from services.storage.store import store_outcomes
from services.worker.stage import load_queued, parse_batch, with_search_vectors
from shared.clusters import rebuild
from shared.db import among, transaction
from shared.enrichment import dispatch_enrichment, pick_up_enrichment, reconcile_enrichment
from shared.intake import read_file, register_reads
from shared.ledger import MAX_RETRIES, claim_for_resend, pick_up
from shared.models import Article, Drop
from shared.queues import Queue
from shared.records import DropOutcome, DropStatus, Stage
from shared.runtime import Runtime
from shared.settings import PipelineSettings
from shared.similarity import sketch
from tests.support import ROOT

pytestmark = pytest.mark.integration

REFERENCE = ROOT / "seeds" / "000_6488bdc6352e6c22.txt"
WIKINEWS = ROOT / "tests" / "data" / "wikinews"
MAX_BYTES = 1024 * 1024


def register(sessions, *paths: Path):
    with transaction(sessions) as session:
        return register_reads(session, [read_file(p, MAX_BYTES) for p in paths], host="test",
                              max_bytes=MAX_BYTES)


def test_same_path_and_content_is_one_drop(sessions, clean_db, tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(REFERENCE.read_bytes())
    [first] = register(sessions, path)
    [again] = register(sessions, path)
    assert first.is_new and not again.is_new and again.drop_id == first.drop_id
    path.write_bytes(REFERENCE.read_bytes() + b"\nOne more paragraph.\n")
    [rewritten] = register(sessions, path)
    assert rewritten.is_new and rewritten.drop_id != first.drop_id


def test_vanished_file_is_recorded(sessions, clean_db, tmp_path: Path) -> None:
    [drop] = register(sessions, tmp_path / "gone.txt")
    assert drop.status is DropStatus.VANISHED


def test_redelivered_outcomes_change_nothing(sessions, clean_db, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(REFERENCE.read_bytes())
    (tmp_path / "b.txt").write_bytes(REFERENCE.read_bytes().replace(b"\n", b"\r\n"))  # same text, other bytes
    ids = [r.drop_id for r in register(sessions, tmp_path / "a.txt", tmp_path / "b.txt")]
    with sessions() as session:
        outcomes = parse_batch(load_queued(session, ids), max_bytes=MAX_BYTES)
    assert all(o.article for o in outcomes)  # neither is known yet: the race storage settles

    for _ in range(3):  # the same message delivered three times
        with transaction(sessions) as session:
            store_outcomes(session, [DropOutcome.model_validate(o.model_dump(mode="json")) for o in outcomes],
                           threshold=0.8, max_unfinished=0)

    with sessions() as session:
        articles = session.execute(select(Article)).scalars().all()
        drops = session.execute(select(Drop).order_by(Drop.id)).scalars().all()
    assert len(articles) == 1
    assert [d.status for d in drops] == [DropStatus.STORED, DropStatus.DUPLICATE]
    assert {d.article_id for d in drops} == {articles[0].id}


def test_reconciler_resends_expired_pickups_and_lost_messages_only(sessions, clean_db, tmp_path: Path) -> None:
    paths = []
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_bytes(REFERENCE.read_bytes())  # three paths, three drops
        paths.append(tmp_path / f"{name}.txt")
    a, b, c = (r.drop_id for r in register(sessions, *paths))
    every_stage = [Stage.PARSE, Stage.STORE]
    with transaction(sessions) as session:
        assert claim_for_resend(session, lease_s=60, idle_stages=every_stage) == []  # just sent
        assert pick_up(session, [a], Stage.PARSE, lease_s=60) == {a}
    with transaction(sessions) as session:  # two minutes later, and a's worker died a while ago
        session.execute(text("UPDATE drops SET sent_at = now() - interval '2 minutes'"))
        session.execute(text("UPDATE drops SET lease_expires_at = now() - interval '1 second' WHERE id = :a"), {"a": a})
    with transaction(sessions) as session:  # the queues are busy: b and c wait their turn, never failed
        assert claim_for_resend(session, lease_s=60, idle_stages=[]) == [(a, 1)]
    with sessions() as session:
        resent = session.get(Drop, a)
        assert (resent.stage, resent.picked_at, resent.deliveries, resent.retries) == (Stage.PARSE, None, 1, 1)
    with transaction(sessions) as session:  # the parse queue is empty: b's and c's messages were lost
        session.execute(text("UPDATE drops SET sent_at = now() - interval '2 minutes'"))
        assert claim_for_resend(session, lease_s=60, idle_stages=[Stage.PARSE]) == [(a, 1), (b, 0), (c, 0)]
    with transaction(sessions) as session:  # the worker keeps dying with a: failed at the cap, not re-sent
        session.execute(text("UPDATE drops SET picked_at = now(), lease_expires_at = now() - interval '1 second', "
                             "retries = :r WHERE id = :a"), {"a": a, "r": MAX_RETRIES - 1})
        assert claim_for_resend(session, lease_s=60, idle_stages=[]) == []
    with sessions() as session:
        failed = session.get(Drop, a)
        assert (failed.status, failed.reason) == (DropStatus.FAILED, "retries_exhausted")
    with transaction(sessions) as session:  # after the broker lost everything: every queued drop
        assert claim_for_resend(session, lease_s=60, all_queued=True) == [(b, 0), (c, 0)]


def test_rebuild_rekeys_and_merges_copies_whose_paragraphs_break_differently(sessions, clean_db,
                                                                            tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(REFERENCE.read_bytes())
    (tmp_path / "b.txt").write_bytes(REFERENCE.read_bytes().replace(b"The treaty, signed", b"\nThe treaty, signed"))
    ids = [r.drop_id for r in register(sessions, tmp_path / "a.txt", tmp_path / "b.txt")]
    with sessions() as session:
        outcomes = parse_batch(load_queued(session, ids), max_bytes=MAX_BYTES)
    assert outcomes[0].article.content_hash == outcomes[1].article.content_hash  # one text now
    # As stored before the key folded paragraph breaks: two articles.
    old_keys = [o.model_copy(update={"article": o.article.model_copy(update={
        "content_hash": hashlib.sha256("\n".join(o.article.paragraphs).encode()).hexdigest()})}) for o in outcomes]
    with transaction(sessions) as session:
        store_outcomes(session, old_keys, threshold=0.8, max_unfinished=0)
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(Article)).scalar_one() == 2

    with transaction(sessions) as session:
        rebuild(session, 0.8)

    with sessions() as session:
        [article] = session.execute(select(Article)).scalars().all()
        drops = session.execute(select(Drop).order_by(Drop.id)).scalars().all()
    assert article.content_hash == outcomes[0].article.content_hash
    assert sorted(d.status for d in drops) == [DropStatus.DUPLICATE, DropStatus.STORED]
    assert {d.article_id for d in drops} == {article.id}  # every drop keeps its lineage
    assert article.primary_sha256 == min(d.sha256 for d in drops)


def test_the_workers_search_vector_is_the_one_storage_would_make(sessions, clean_db, tmp_path: Path) -> None:
    paths = []
    for i, source in enumerate(sorted(WIKINEWS.glob("*.txt"))[:6]):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_bytes(source.read_bytes())
    ids = [r.drop_id for r in register(sessions, *paths)]
    with transaction(sessions) as session:
        outcomes = parse_batch(load_queued(session, ids), max_bytes=MAX_BYTES)
        made = with_search_vectors(session, outcomes[:3])  # half from the worker, half left to storage
    assert all(o.search_vector for o in made) and not any(o.search_vector for o in outcomes[3:])
    # A worker of the version before sent the text form: storage makes that one itself, as if it had none.
    older = outcomes[3].model_copy(update={"search_vector": "'older':1A 'worker':2A"})
    with transaction(sessions) as session:
        store_outcomes(session, outcomes[4:], threshold=0.8, max_unfinished=0)  # a batch without any vector
    with transaction(sessions) as session:
        store_outcomes(session, [*made, older], threshold=0.8, max_unfinished=0)
    with sessions() as session:
        same = session.execute(text(
            "SELECT count(*) FROM articles WHERE search_vector = setweight(to_tsvector('english', title), 'A') "
            "|| setweight(to_tsvector('english', body), 'B')")).scalar_one()
    assert same == 6


def test_an_outcome_without_a_sketch_gets_one_and_links_to_its_near_copy(sessions, clean_db, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(REFERENCE.read_bytes())
    (tmp_path / "b.txt").write_bytes(REFERENCE.read_bytes().replace(b"The treaty, signed", b"The pact, signed"))
    ids = [r.drop_id for r in register(sessions, tmp_path / "a.txt", tmp_path / "b.txt")]
    with sessions() as session:
        made, older = parse_batch(load_queued(session, ids), max_bytes=MAX_BYTES)
    assert made.shingles and made.minhash
    older = older.model_copy(update={"shingles": None, "minhash": None})  # a worker of an older version
    with transaction(sessions) as session:
        store_outcomes(session, [made], threshold=0.8, max_unfinished=0)
    with transaction(sessions) as session:
        store_outcomes(session, [older], threshold=0.8, max_unfinished=0)
    with sessions() as session:
        articles = session.execute(select(Article).order_by(Article.id)).scalars().all()
    assert [(a.shingles, a.minhash) for a in articles] == [sketch(a.body) for a in articles]
    assert len({a.cluster_id for a in articles}) == 1 and articles[0].shingles != articles[1].shingles


def test_the_enrichment_queue_is_bounded_and_the_rest_waits_in_the_ledger(servers, sessions, clean_db,
                                                                         tmp_path: Path) -> None:
    broker_url = servers.env["NEWSFLOW_BROKER_URL"].rsplit("/", 1)[0] + "/9"  # nobody consumes from 9
    redis.Redis.from_url(broker_url).flushdb()
    runtime = Runtime(servers.settings().model_copy(update={
        "broker_url": SecretStr(broker_url), "pipeline": PipelineSettings(max_unfinished=10, batch_size=100)}))
    paths = []
    for i, source in enumerate(sorted(WIKINEWS.glob("*.txt"))[:30]):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_bytes(source.read_bytes())
    ids = [r.drop_id for r in register(sessions, *paths)]
    with sessions() as session:
        outcomes = parse_batch(load_queued(session, ids), max_bytes=MAX_BYTES)
    with transaction(sessions) as session:
        to_enrich = store_outcomes(session, outcomes, threshold=0.8, max_unfinished=10).to_enrich
    assert len(to_enrich) == 10  # the queue takes ten, recorded as sent by the insert; twenty wait, unsent
    dispatch_enrichment(runtime.celery, to_enrich, batch_size=100)
    assert reconcile_enrichment(runtime) == 0  # still full: nothing more sent, nothing counted lost
    with transaction(sessions) as session:  # an enricher takes the ten
        pick_up_enrichment(session, to_enrich[:10], lease_s=60)
    assert reconcile_enrichment(runtime) == 10  # room again: the next ten oldest
    with sessions() as session:
        sent = session.execute(text("SELECT count(*) FROM articles WHERE enrich_sent_at IS NOT NULL")).scalar_one()
    assert sent == 20
    assert redis.Redis.from_url(broker_url).llen(Queue.ENRICH.value) == 2  # two messages, never a flood


def test_among_matches_exactly_the_ids_given(sessions, clean_db, tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.txt" for i in range(3)]
    for path in paths:
        path.write_bytes(REFERENCE.read_bytes())
    ids = sorted(r.drop_id for r in register(sessions, *paths))
    with sessions() as session:
        def found(wanted: list[int]) -> list[int]:
            return list(session.execute(select(Drop.id).where(among(Drop.id, wanted)).order_by(Drop.id)).scalars())

        assert found(ids) == ids
        assert found([ids[2], 10**12, ids[0], ids[0]]) == [ids[0], ids[2]]
        assert found([]) == []
