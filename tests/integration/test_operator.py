"""Operator commands on real services: audit finds broken invariants, replay re-runs drops; and
the watcher's back-pressure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import delete, func, select, text, update

from shared.models import Article, Drop
from shared.records import DropStatus
from tests.support import ROOT, ServiceProcess, TestServers, newsflow, wait_for_drops, write_atomically

pytestmark = pytest.mark.integration

REFERENCE = ROOT / "seeds" / "000_6488bdc6352e6c22.txt"
WIKINEWS = ROOT / "tests" / "data" / "wikinews"



def test_audit_fails_on_a_stuck_drop_and_replay_runs_failed_drops_again(
        pipeline: TestServers, clean_db: None, sessions) -> None:
    assert newsflow(pipeline.env, "ingest", str(REFERENCE), "--wait", "--workers", "0").returncode == 0
    assert newsflow(pipeline.env, "audit").returncode == 0

    with sessions() as session, session.begin():  # as if storage had died with it an hour ago
        an_hour_ago = func.now() - text("interval '1 hour'")
        session.execute(update(Drop).values(status=DropStatus.QUEUED, article_id=None, finished_at=None,
                                            stage="store", sent_at=an_hour_ago, picked_at=an_hour_ago,
                                            lease_expires_at=an_hour_ago))
        session.execute(delete(Article))
    broken = newsflow(pipeline.env, "audit")
    assert broken.returncode == 1
    assert "FAIL drops_in_flight" in broken.stdout

    with sessions() as session, session.begin():  # as a storage bug, since fixed, would have left it
        session.execute(update(Drop).values(status=DropStatus.FAILED, reason="error",
                                            detail="storage: a bug, since fixed"))
    replayed = newsflow(pipeline.env, "replay", "--status", "failed", "--workers", "0")

    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 drops" in replayed.stdout
    with sessions() as session:
        again = session.execute(select(Drop)).scalar_one()
    assert again.status == DropStatus.STORED
    assert newsflow(pipeline.env, "audit").returncode == 0


def test_replay_says_why_a_drop_cannot_be_replayed(watcher, pipeline: TestServers, drop_dir: Path,
                                                   sessions) -> None:
    huge = drop_dir / "huge.txt"
    write_atomically(huge, b"date 2020-01-01 Big\n" + b"word " * 100_000)
    [drop] = wait_for_drops(sessions, 1)
    assert drop.reason == "too_large"
    huge.unlink()

    replayed = newsflow(pipeline.env, "replay", "--reason", "too_large", "--workers", "0")

    assert replayed.returncode == 0, replayed.stderr
    assert "bytes not kept and the file is gone" in replayed.stderr
    assert "replayed 0 drops, 1 could not be" in replayed.stdout


def test_watcher_pauses_while_the_pipeline_owes_its_limit_and_resumes(servers: TestServers, clean_db: None, sessions,
                                                           drop_dir: Path) -> None:
    # A database nobody consumes from (benchmarks use 12-14, the other tests 15).
    broker_url = servers.env["NEWSFLOW_BROKER_URL"].rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(broker_url).flushdb()
    env = {**servers.env, "NEWSFLOW_BROKER_URL": broker_url, "NEWSFLOW_PIPELINE__MAX_UNFINISHED": "10",
           "NEWSFLOW_PIPELINE__BATCH_SIZE": "5"}
    private = TestServers(env=env, logs=servers.logs)
    files = sorted(WIKINEWS.glob("*.txt"))[:100]

    with ServiceProcess("watcher", private, "--drop", str(drop_dir)) as watcher:
        watcher.wait_for_log("watching")
        for path in files:
            write_atomically(drop_dir / path.name, path.read_bytes())
        watcher.wait_for_log("paused taking files")
        time.sleep(2)  # several polls and a rescan: it must stay paused
        with sessions() as session:
            taken = len(session.execute(select(Drop.id)).all())
        assert taken < len(files) / 2, f"{taken} files taken while the pipeline owed its limit"

        with ServiceProcess("worker", private, "--concurrency", "2"), ServiceProcess("storage", private):
            drops = wait_for_drops(sessions, len(files), timeout_s=120)
        assert "resumed taking files" in watcher.log()

    assert len(drops) == len(files)
    assert {d.status for d in drops} == {DropStatus.STORED}
