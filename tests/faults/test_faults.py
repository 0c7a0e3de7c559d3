"""Delivery guarantees under faults, done for real: processes killed with SIGKILL, the broker restarted
empty, the database stopped. Every test ends with `newsflow audit` passing and exactly the expected
articles stored once (see conftest.Rig.verify).

Run with `pytest tests/faults -s` to see one report line per test:
FAULT | fault | in flight at the fault | outcome | time from the fault to the last drop terminal.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text

from shared.celery_app import create_celery
from shared.db import transaction
from shared.intake import read_file, register_reads
from shared.ledger import dispatch
from shared.queues import Queue
from shared.settings import PipelineSettings, StorageSettings
from tests.faults.corpus import MAX_BYTES, DropFile, Feeder, corpus, second_version
from tests.faults.rig import Fault, Rig
from tests.support import ServiceProcess

pytestmark = pytest.mark.integration

FILES = corpus()  # 590 distinct files
STREAM_PER_S = 200  # over three times what the pipeline takes on two cores: a backlog builds during the ~3 s stream
RECOVER_TIMEOUT_S = 75.0
SHORT_LEASE_S = 2
PAUSE_S = 12.0  # six leases: before leases ran from pickups, the fifth expiry failed a waiting drop
BATCH_SIZE = PipelineSettings().batch_size
STORAGE_PROCESSES = StorageSettings().concurrency  # `newsflow storage`'s processes, each with a batch in hand
# How PostgreSQL logs a client that died inside its transaction: between statements (idle in transaction),
# or while a statement ran (the backend finds the socket gone when it answers).
CUT_TRANSACTION = ("unexpected EOF on client connection with an open transaction", "connection to client lost",
                   "could not send data to client")


def stream(rig: Rig) -> Feeder:
    return rig.feed(FILES, per_second=STREAM_PER_S)


def wait_for_fault_point(rig: Rig, feeder: Feeder) -> None:
    """Mid-stream: a third of the files terminal, or (on a slow, loaded machine) 60% of them written
    whatever the pipeline has done by then, so the stream always goes on after the fault."""
    def reached() -> bool:
        return rig.terminal() >= len(FILES) / 3 or feeder.written >= len(FILES) * 0.6
    rig.wait_until(reached, "the fault point", 60.0)


def known_rereads(watcher: ServiceProcess) -> int:
    """Files the watcher read again and found in the ledger already (its `files taken` lines)."""
    return sum(int(n) for n in re.findall(r"files taken \[.*?known=(\d+)", watcher.log()))


def finish(rig: Rig, feeder: Feeder, *, restart_exited: bool = False) -> str:
    feeder.join()
    rig.wait_terminal(len(FILES), timeout_s=RECOVER_TIMEOUT_S, restart_exited=restart_exited)
    rig.assert_running()
    return rig.verify()


def retries(process: ServiceProcess) -> int:
    """Task messages the service received with an ETA: Celery's retries with backoff."""
    return sum("received [data=" in line and "'eta': None" not in line for line in process.log().splitlines())


def kill_in_the_act(rig: Rig, service: str, busy: Callable[[], bool], evidence: Callable[[], int], baseline: int
                    ) -> tuple[int, int, int]:
    """SIGKILL `service` (and its pool) the moment `busy()` holds, then start a new one. A kill that still
    fell between two units of work (`evidence()`, read once the service is dead, did not grow past
    `baseline`) is done again, up to three times.
    Returns (processes in the tree killed last, kills, how much `evidence()` grew with the last)."""
    for kills in range(1, 4):
        rig.wait_until(busy, f"{service} at work", 30.0, poll_s=0.002)
        killed = rig.kill9(rig.current[service])
        rig.wait_until(lambda: rig.open_transactions(service) == 0, "its connections gone", 30.0)
        after = evidence()
        rig.start(service)
        if after > baseline:
            return killed, kills, after - baseline
        baseline = after
    raise AssertionError(f"three kills of {service} all fell between two units of work")


def test_worker_killed_mid_stream(rig: Rig) -> None:
    rig.start_pipeline()
    feeder = stream(rig)
    wait_for_fault_point(rig, feeder)

    # With a batch in hand (delivered, not acknowledged): the message is lost with the worker. It stays
    # aside in the broker (`unacked`) until the visibility timeout, an hour: only the reconciler helps.
    fault = rig.fault(feeder)
    killed, kills, lost = kill_in_the_act(rig, "worker", lambda: rig.in_hand(Queue.PARSE) > 0,
                                          lambda: rig.in_hand(Queue.PARSE), baseline=0)

    outcome = finish(rig, feeder)
    rig.report(f"kill -9 worker ({killed} processes) with a batch in hand, new worker started"
               + (f" ({kills} kills)" if kills > 1 else ""), fault,
               f"{lost} parse message(s) lost with it; {outcome}")


def test_storage_killed_mid_batch(rig: Rig) -> None:
    rig.start_pipeline()
    feeder = stream(rig)
    wait_for_fault_point(rig, feeder)

    # Inside its transaction (its connections are named after it): PostgreSQL logs the cut and rolls back.
    fault = rig.fault(feeder)
    def cuts() -> int:
        return sum(map(rig.postgres_log_count, CUT_TRANSACTION))

    cut_before = cuts()
    killed, kills, _ = kill_in_the_act(rig, "storage", lambda: rig.open_transactions("storage") > 0, cuts,
                                       baseline=cut_before)
    lost = rig.in_hand(Queue.STORE)  # left aside by the dead storage processes, never acknowledged

    outcome = finish(rig, feeder)
    cut = cuts() - cut_before
    rig.report(f"kill -9 storage ({killed} processes) inside a transaction, new storage started"
               + (f" ({kills} kills)" if kills > 1 else ""), fault,
               f"{cut} open transaction cut (PostgreSQL log), {lost} store message(s) lost; {outcome}")


def test_storage_paused_for_many_leases_fails_nothing_and_floods_nothing(rig: Rig) -> None:
    # Leases run from a worker's pickup, so drops waiting behind a stopped stage are neither failed nor sent
    # again; only what storage held when it stopped (a batch a storage process at most) is re-sent, once.
    lease = {"NEWSFLOW_PIPELINE__LEASE_S": str(SHORT_LEASE_S)}
    rig.start("worker", env=lease)
    storage = rig.start("storage", env=lease)
    rig.wait_for_nodes(2)
    rig.start("watcher", env=lease)  # its reconciler runs every second
    files = [*FILES, *(DropFile(f.name.replace(".txt", f"_v{k}.txt"), second_version(f.data, f"{f.name} {k}"))
                       for k in (2, 3, 4) for f in FILES)]
    feeder = rig.feed(files)
    rig.wait_until(lambda: rig.terminal() >= 300, "300 drops terminal", 60.0)

    fault = rig.fault(feeder)
    tree = rig.suspend(storage)
    time.sleep(PAUSE_S)
    waiting = rig.counts().get("queued", 0)
    rig.resume(tree)

    feeder.join()
    rig.wait_terminal(len(files), timeout_s=RECOVER_TIMEOUT_S)
    rig.assert_running()
    outcome = rig.verify()
    with rig.sessions() as session:
        failed, retried, most = session.execute(text(
            "SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE retries > 0), "
            "coalesce(max(retries), 0) FROM drops")).one()
    lost = sum(int(n) for n in re.findall(r"re-sent drops a worker did not finish.*?count=(\d+)",
                                           rig.current["watcher"].log()))
    assert failed == 0, f"{failed} drops failed while storage was paused"
    in_hand = BATCH_SIZE * STORAGE_PROCESSES
    assert retried <= in_hand and most <= 1, f"{retried} drops re-sent after a pickup, one {most} times"
    assert lost <= in_hand, f"{lost} drops re-sent in all: the queues were flooded with copies"
    rig.report(f"storage paused (SIGSTOP) {PAUSE_S:.0f} s = {PAUSE_S / SHORT_LEASE_S:.0f} leases of "
               f"{SHORT_LEASE_S} s, then resumed", fault,
               f"{waiting} drops waiting at the end of the pause, {lost} re-sent ({retried} after a pickup), "
               f"0 failed; {outcome}")


def test_redis_restarted_without_persistence(rig: Rig) -> None:
    rig.start_pipeline()
    feeder = stream(rig)
    wait_for_fault_point(rig, feeder)

    lost = rig.broker_messages()
    fault = rig.fault(feeder)
    rig.broker.restart()  # kill -9 and a new, empty server on the same port (no RDB, no AOF to load)

    # No service is restarted by the test: they must reconnect by themselves, and the reconciler re-send
    # what was lost. A service that exits is started again, as the deployment's restart policy does:
    # kombu's Redis transport sometimes crashes a consumer that held an unacknowledged message when the
    # connection dropped ("Unrecoverable error: AttributeError ... 'hostname'"), see the report.
    outcome = finish(rig, feeder, restart_exited=True)
    for service in ("worker", "storage"):
        [first] = [p for p in rig.processes if p.service == service][:1]
        assert "Connection to broker lost" in first.log(), f"{service} never noticed the restart"
    # A crash must not look like a clean stop to the supervisor (shared/runtime.py keeps Celery's status).
    assert all(status != 0 for _, status in rig.restarted), rig.restarted
    crashed = ", ".join(f"{service} (exit {status})" for service, status in rig.restarted) or "none"
    rig.report("Redis kill -9 + restarted empty, services left running", fault,
               f"{sum(lost.values())} broker messages lost ({lost['unacked']} unacked); "
               f"services that exited and were restarted: {crashed}; {outcome}")


def test_postgres_stopped_for_ten_seconds(rig: Rig) -> None:
    rig.start_pipeline()
    feeder = stream(rig)
    wait_for_fault_point(rig, feeder)

    fault = rig.fault(feeder)
    rig.pg.stop()
    time.sleep(10)
    rig.pg.start()

    outcome = finish(rig, feeder)
    watcher = rig.current["watcher"]
    assert "waiting for the database or broker" in watcher.log(), "the watcher never saw the outage"
    assert [p.service for p in rig.processes].count("watcher") == 1  # it kept going, nobody restarted it
    rig.report("PostgreSQL stopped 10 s (fast shutdown), started again", fault,
               f"task retries with backoff: worker {retries(rig.current['worker'])}, "
               f"storage {retries(rig.current['storage'])}; {outcome}")


def test_watcher_killed_and_restarted(rig: Rig) -> None:
    services = rig.start_pipeline()
    feeder = stream(rig)
    wait_for_fault_point(rig, feeder)

    fault = rig.fault(feeder)
    rig.kill9(services["watcher"])
    written_before = feeder.written
    time.sleep(3)  # files keep arriving while it is down
    down_for = feeder.written - written_before
    assert down_for > 0
    again = rig.start("watcher")

    outcome = finish(rig, feeder)
    with rig.sessions() as session:
        twice = session.execute(text("SELECT count(*) FROM (SELECT path FROM drops GROUP BY path "
                                     "HAVING count(*) > 1) AS t")).scalar_one()
    assert twice == 0, f"{twice} files were ingested twice"
    reread = known_rereads(again)
    rig.report("kill -9 watcher, restarted 3 s later", fault,
               f"{down_for} files dropped while down, {reread} known files re-read after restart; {outcome}")


def test_same_event_twice_and_rewrites(rig: Rig) -> None:
    rig.start_pipeline()
    originals = FILES[:40:2]  # 20 first versions
    for f in originals:
        rig.drop(f.name, f.data)
    rig.wait_terminal(len(originals))
    start = time.time()

    # The same file event again: mtime touched, and the same bytes written again to the same path.
    for f in originals[:10]:
        os.utime(rig.drop_dir / f.name)
    for f in originals[10:]:
        rig.drop(f.name, f.data)
    # Rewritten in place with new content: a new drop (path, new bytes) and a new article each,
    # once by rename (atomic) and once truncated and rewritten where it stands.
    rewritten = [(originals[0], "atomic"), (originals[1], "in place")]
    for f, how in rewritten:
        new = second_version(f.data, f"rewrite {how}")
        if how == "atomic":
            rig.drop(f.name, new)
        else:
            (rig.drop_dir / f.name).write_bytes(new)
            rig.remember(rig.drop_dir / f.name, new)
    # The same bytes as another file, under a new name: a new drop that ends duplicate.
    rig.drop("copy_of_" + originals[2].name, originals[2].data)

    # Two identical messages for the same drops, sent by hand while they are queued (two worker
    # processes race for them), and both again once they are terminal.
    by_hand = rig.drop_dir.parent / "by_hand"
    by_hand.mkdir()
    reads = []
    for f in FILES[40:60]:
        path = by_hand / f.name
        path.write_bytes(f.data)
        rig.remember(path, f.data)
        reads.append(read_file(path, MAX_BYTES))
    with transaction(rig.sessions) as session:
        registered = register_reads(session, reads, host="test", max_bytes=MAX_BYTES)
    ids = [r.drop_id for r in registered]
    app = create_celery(rig.broker.url)
    try:
        assert dispatch(app, ids, batch_size=20) == dispatch(app, ids, batch_size=20) == 1
        expected_drops = len(originals) + len(rewritten) + 1 + len(ids)
        rig.wait_terminal(expected_drops)
        dispatch(app, ids, batch_size=20)
        dispatch(app, ids, batch_size=20)
    finally:
        app.close()
    time.sleep(3)  # three rescans, and time for the late messages: nothing more may appear
    rig.wait_terminal(expected_drops)

    outcome = rig.verify()
    counts = rig.counts()
    assert sum(counts.values()) == expected_drops
    assert counts.get("duplicate") == 1
    redelivered = sum(p.log().count("skipped drops already terminal") for p in rig.processes)
    [watcher] = [p for p in rig.processes if p.service == "watcher"]
    reread = known_rereads(watcher)
    assert reread >= len(originals) - len(rewritten), "the watcher never saw the same files again"
    rig.report("same event twice (touch, same bytes), rewrites, 2x identical messages by hand",
               Fault(start, f"{len(ids)} drops sent twice"),
               f"watcher re-read {reread} known files (no new drop), storage skipped {redelivered} "
               f"redelivered batch; {outcome}")
