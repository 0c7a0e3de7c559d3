"""`newsflow status` and `newsflow trace` against real services: consumers from the heartbeats they record,
unfinished work and its age from the ledger, and one drop's journey."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import transaction
from shared.heartbeats import HEARTBEAT_S
from shared.intake import read_file, register_reads
from tests.support import ROOT, TestServers, newsflow

pytestmark = pytest.mark.integration

WIKINEWS = sorted((ROOT / "tests" / "data" / "wikinews").glob("*.txt"))
KEYS = {"stages", "workers", "totals", "rates", "lag_s", "replay_backlog", "sources"}



def status(env: dict[str, str]) -> dict:
    done = newsflow(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_status_from_the_ledger_and_heartbeats(pipeline: TestServers, clean_db: None, sessions,
                                               tmp_path: Path) -> None:
    for path in WIKINEWS[:3]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert newsflow(pipeline.env, "ingest", str(tmp_path), "--wait", "--workers", "0").returncode == 0
    waiting = tmp_path / "waiting"  # recorded, never sent: as if its message were still on its way
    waiting.mkdir()
    for path in WIKINEWS[3:5]:
        (waiting / path.name).write_bytes(path.read_bytes())
    with transaction(sessions) as session:
        register_reads(session, [read_file(p, 1 << 20) for p in sorted(waiting.iterdir())], host="test",
                       max_bytes=1 << 20)
        session.execute(text("UPDATE drops SET sent_at = now() - interval '2 minutes' WHERE status = 'queued'"))
        session.execute(text("INSERT INTO heartbeats (node, service, host, pid, queues, beat_at) VALUES "
                             "('worker@gone', 'worker', 'gone', 1, '{newsflow.parse}', now() - interval '1 hour')"))

    deadline = time.monotonic() + 3 * HEARTBEAT_S  # the session's services beat every HEARTBEAT_S
    while not all((found := status(pipeline.env))["stages"][s]["consumers"] for s in ("parse", "store", "enrich")):
        assert time.monotonic() < deadline, found["workers"]
        time.sleep(0.5)

    assert set(found) == KEYS
    parse = found["stages"]["parse"]
    assert parse["unfinished"] == 2 and parse["oldest_age_s"] >= 120
    assert found["stages"]["store"]["unfinished"] == 0
    services = {w["service"] for w in found["workers"]}
    assert {"worker", "storage", "enricher"} <= services
    assert "worker@gone" not in {w["hostname"] for w in found["workers"]}  # not heard from: offline
    assert found["totals"]["drops"] == {"stored": 3, "queued": 2}
    assert found["rates"]["stored"]["1m"] == 3
    assert found["lag_s"]["stored"]["p50"] is not None

    table = newsflow(pipeline.env, "status")
    assert table.returncode == 0 and "parse" in table.stdout and "unfinished" in table.stdout

    journey = newsflow(pipeline.env, "trace", str(tmp_path / WIKINEWS[0].name))
    assert journey.returncode == 0, journey.stderr
    assert "discovered on" in journey.stdout and "stored; parsed on" in journey.stdout
    assert "not a drop" not in newsflow(pipeline.env, "trace", "999999").stderr
    assert newsflow(pipeline.env, "trace", "999999").returncode == 1
