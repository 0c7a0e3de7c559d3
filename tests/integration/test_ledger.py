"""The ledger and the storage step against real PostgreSQL: idempotent under redelivery and races."""

from pathlib import Path

import pytest
from sqlalchemy import select

from services.storage.store import store_outcomes
from services.worker.stage import parse_batch
from shared.db import transaction
from shared.intake import read_file, register_reads
from shared.ledger import claim_expired
from shared.models import Article, Drop
from shared.records import DropOutcome, DropStatus
from tests.support import ROOT

pytestmark = pytest.mark.integration

REFERENCE = ROOT / "seeds" / "000_6488bdc6352e6c22.txt"
MAX_BYTES = 1024 * 1024


def register(sessions, *paths: Path):
    with transaction(sessions) as session:
        return register_reads(session, [read_file(p, MAX_BYTES) for p in paths], host="test", lease_s=60,
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
        outcomes = parse_batch(session, ids, max_bytes=MAX_BYTES)
    assert all(o.article for o in outcomes)  # neither is known yet: the race storage settles

    for _ in range(3):  # the same message delivered three times
        with transaction(sessions) as session:
            store_outcomes(session, [DropOutcome.model_validate(o.model_dump(mode="json")) for o in outcomes],
                           threshold=0.8, lease_s=60.0)

    with sessions() as session:
        articles = session.execute(select(Article)).scalars().all()
        drops = session.execute(select(Drop).order_by(Drop.id)).scalars().all()
    assert len(articles) == 1
    assert [d.status for d in drops] == [DropStatus.STORED, DropStatus.DUPLICATE]
    assert {d.article_id for d in drops} == {articles[0].id}


def test_reconciler_claims_expired_leases_once(sessions, clean_db, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(REFERENCE.read_bytes())
    [drop] = register(sessions, tmp_path / "a.txt")
    with transaction(sessions) as session:
        assert claim_expired(session, lease_s=60) == []  # lease still running
        assert claim_expired(session, lease_s=60, all_queued=True) == [(drop.drop_id, 1)]
    with transaction(sessions) as session:
        session.execute(Drop.__table__.update().values(lease_expires_at=None, attempts=4))
    with transaction(sessions) as session:
        assert claim_expired(session, lease_s=60, all_queued=True) == []  # fifth delivery: failed instead
    with sessions() as session:
        assert session.get(Drop, drop.drop_id).status is DropStatus.FAILED
