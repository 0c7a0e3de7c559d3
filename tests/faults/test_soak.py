"""`make soak [MINUTES=15]`: drops arriving continuously through the watcher for MINUTES minutes and, once a
minute, a random fault done for real: kill -9 of any service (worker, storage, enricher, watcher; the rig
starts it again, as the deployment's restart policy does), Redis restarted empty, PostgreSQL restarted.

At the end: every file accounted for (conftest.Rig.verify, `newsflow audit` included), every article
enriched once, and each service's memory (its process tree's RSS) within 20% of its level after the first
minute. Not part of `make test`: it runs only when NEWSFLOW_SOAK_MINUTES is set (`make soak` sets it).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from itertools import count

import psutil
import pytest

from tests.faults.corpus import DropFile, corpus, second_version
from tests.faults.rig import Rig
from tests.support import write_atomically

pytestmark = pytest.mark.integration

MINUTES = float(os.environ.get("NEWSFLOW_SOAK_MINUTES", "0"))
RATE_PER_S = float(os.environ.get("NEWSFLOW_SOAK_RATE", "5"))  # what one enricher process keeps up with
FAULT_EVERY_S = 60.0
SERVICES = ("worker", "storage", "enricher", "watcher")
FAULTS = (*(f"kill -9 {s}" for s in SERVICES), "Redis restarted empty", "PostgreSQL restarted")
MEMORY_GROWTH = 1.2
DRAIN_TIMEOUT_S = 600.0


def endless_drops() -> Iterator[DropFile]:
    """The corpus, then new versions of it (one paragraph more, a different one each round)."""
    for k in count():
        for f in corpus():
            yield DropFile(f"r{k:03d}_{f.name}", second_version(f.data, f"{f.name}, round {k}") if k else f.data)


class Stream(threading.Thread):
    """Writes RATE_PER_S drops a second into the watched folder until stopped."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(name="soak-stream", daemon=True)
        self.rig, self.stopped, self.written, self.error = rig, threading.Event(), 0, None

    def run(self) -> None:
        try:
            start = time.monotonic()
            for i, drop in enumerate(endless_drops()):
                if self.stopped.wait(max(0.0, start + i / RATE_PER_S - time.monotonic())):
                    return
                self.rig.remember(self.rig.drop_dir / drop.name, drop.data)
                write_atomically(self.rig.drop_dir / drop.name, drop.data)
                self.written += 1
        except BaseException as e:  # reported at the end
            self.error = e


def memory_mib(rig: Rig) -> dict[str, float]:
    """RSS of each service's current process tree (a Celery main process and its pool)."""
    found = {}
    for service, process in rig.current.items():
        assert process.process is not None
        try:
            main = psutil.Process(process.process.pid)
            found[service] = sum(p.memory_info().rss for p in [main, *main.children(recursive=True)]) / 2**20
        except psutil.NoSuchProcess:
            continue
    return found


def inflict(rig: Rig, fault: str) -> None:
    if fault.startswith("kill -9 "):
        service = fault.removeprefix("kill -9 ")
        rig.kill9(rig.current[service])
        rig.start(service, *(("--concurrency", "1") if service == "enricher" else ()))
    elif fault.startswith("Redis"):
        rig.broker.restart()
    else:
        rig.pg.stop()
        time.sleep(2)
        rig.pg.start()


@pytest.mark.skipif(not MINUTES, reason="the soak runs with `make soak` (NEWSFLOW_SOAK_MINUTES)")
@pytest.mark.timeout(int(MINUTES * 60 + 2 * DRAIN_TIMEOUT_S + 300))  # longer than the suite's 600 s
def test_soak(rig: Rig) -> None:
    rig.start("worker")
    rig.start("storage")
    rig.start("enricher", "--concurrency", "1")
    rig.wait_for_nodes(3)
    rig.start("watcher")
    stream = Stream(rig)
    stream.start()
    rng = random.Random(int(os.environ.get("NEWSFLOW_SOAK_SEED", "1")))
    start = time.monotonic()
    baseline: dict[str, float] = {}
    done: list[tuple[float, str]] = []
    while (elapsed := time.monotonic() - start) < MINUTES * 60:
        rig.restart_exited()
        if not baseline and elapsed >= FAULT_EVERY_S:
            baseline = memory_mib(rig)  # after the first minute, before the first fault
        if elapsed >= FAULT_EVERY_S * (len(done) + 1):
            fault = rng.choice(FAULTS)
            inflict(rig, fault)
            done.append((elapsed, fault))
            print(f"  soak {elapsed / 60:5.1f} min: {fault}; {stream.written} files written", flush=True)
        time.sleep(0.5)
    stream.stopped.set()
    stream.join(10)
    assert stream.error is None, stream.error
    rig.wait_terminal(len(rig.dropped), timeout_s=DRAIN_TIMEOUT_S, restart_exited=True)
    rig.wait_enriched(DRAIN_TIMEOUT_S, restart_exited=True)
    final = memory_mib(rig)
    outcome = rig.verify()
    enriched = rig.verify_enrichment()

    print(f"\nSOAK | {MINUTES:.0f} min, {stream.written} files at {RATE_PER_S:g}/s, {len(done)} faults | {outcome}; "
          f"{enriched}")
    print("SOAK | faults: " + ", ".join(f"{t / 60:.1f} min {fault}" for t, fault in done))
    print("SOAK | memory MiB (after minute 1 -> end): " + ", ".join(
        f"{s} {baseline.get(s, 0):.0f} -> {final.get(s, 0):.0f}" for s in SERVICES))
    grown = {s: (baseline[s], final[s]) for s in baseline if s in final and final[s] > MEMORY_GROWTH * baseline[s]}
    assert not grown, f"memory grew over {MEMORY_GROWTH:.0%} of its level after the first minute: {grown}"
    assert rig.enrichment().get("failed", 0) == 0
