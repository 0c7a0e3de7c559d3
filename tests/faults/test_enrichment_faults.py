"""The enrichment path under faults, done for real: the enricher killed with a batch in hand, an article the
model code cannot take, the broker restarted empty while enrichment is in flight. Each ends with the drops'
checks (conftest.Rig.verify, `newsflow audit` included, whose enrichment invariants hold) and every article
enriched once, or failed with its reason and still stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.faults.corpus import corpus
from tests.faults.rig import Rig
from tests.support import ROOT

pytestmark = pytest.mark.integration

FILES = corpus()[:60]  # enrichment is the slow stage: ~10 articles/s a process
ENRICH_TIMEOUT_S = 120.0
ONE_PROCESS = ("--concurrency", "1")
POISON = "Poisonpill Quux"  # the planted fault below raises for an article that mentions it
# Loaded at start-up by the enricher given this folder on PYTHONPATH: the enrichment code raises for one
# article, as a bug in a library would, without any test hook in the service itself.
SITECUSTOMIZE = f'''
import sys

sys.path.insert(0, {str(ROOT)!r})  # this checkout's code, as `python -m` would see it (sitecustomize runs first)

from services.enricher import enrich  # noqa: E402

_enrichment = enrich.Enricher._enrichment


def _poisoned(self, item, language, doc):
    if {POISON!r} in item.body:
        raise RuntimeError("planted fault: the model code cannot take this article")
    return _enrichment(self, item, language, doc)


enrich.Enricher._enrichment = _poisoned
'''


def start_with_enricher(rig: Rig, *, env: dict[str, str] | None = None, batch_size: int | None = None) -> None:
    """Worker, storage (sending enrichment `batch_size` articles a message), one enricher process, watcher."""
    rig.start("worker")
    rig.start("storage", env={"NEWSFLOW_PIPELINE__BATCH_SIZE": str(batch_size)} if batch_size else None)
    rig.start("enricher", *ONE_PROCESS, env=env)
    rig.wait_for_nodes(3)
    rig.start("watcher")


def test_enricher_killed_with_a_batch_in_hand(rig: Rig) -> None:
    start_with_enricher(rig)
    feeder = rig.feed(FILES)
    rig.wait_until(lambda: rig.enrichment()["in_hand"] > 0, "the enricher at work", 60.0, poll_s=0.01)

    fault = rig.fault(feeder)
    in_hand = rig.enrichment()["in_hand"]
    killed = rig.kill9(rig.current["enricher"])
    rig.start("enricher", *ONE_PROCESS)

    feeder.join()
    rig.wait_terminal(len(FILES))
    rig.wait_enriched(ENRICH_TIMEOUT_S)
    rig.assert_running()
    outcome = rig.verify()
    enriched = rig.verify_enrichment()
    assert rig.enrichment().get("failed", 0) == 0
    rig.report_enrichment(f"kill -9 enricher ({killed} processes) with articles in hand, new enricher started", fault,
               f"{in_hand} articles in hand; {enriched}; {outcome}")


def test_poison_article_fails_alone_and_is_replayed(rig: Rig, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    pythonpath = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    start_with_enricher(rig, env={"PYTHONPATH": pythonpath})
    paragraphs = [f"{POISON} said on Tuesday that paragraph {n} of this article reads like any other."
                  for n in range(1, 6)]
    poison = rig.drop("poison.txt", "\n".join(["date 2024-05-01 A poisoned article", *paragraphs,
                                                "bloomberg news"]).encode() + b"\n")
    fault = rig.fault()
    feeder = rig.feed(FILES)

    feeder.join()
    rig.wait_terminal(len(FILES) + 1)
    rig.wait_enriched(ENRICH_TIMEOUT_S)
    outcome = rig.verify()
    enriched = rig.verify_enrichment()
    with rig.sessions() as session:
        failed = session.execute(text(
            "SELECT a.id, a.enrichment_error, a.enrich_deliveries, d.status FROM articles a "
            "JOIN drops d ON d.article_id = a.id WHERE a.enrichment_status = 'failed'")).all()
    assert len(failed) == 1, failed
    [(article_id, error, deliveries, drop_status)] = failed
    assert "planted fault" in error and drop_status == "stored" and deliveries == 1, failed[0]

    # After the fix (an enricher without the planted fault), the operator replays it.
    rig.kill9(rig.current["enricher"])
    rig.start("enricher", *ONE_PROCESS)
    rig.wait_for_nodes(3)
    replayed = subprocess.run([sys.executable, "-m", "services.cli", "replay", "--enrichment", "--id",
                               str(article_id), "--workers", "0"], env={**os.environ, **rig.servers.env}, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed the enrichment of 1 articles" in replayed.stdout and "enriched 1, failed 0" in replayed.stdout
    assert rig.audit().returncode == 0
    rig.report_enrichment(f"a poison article ({poison.name}) among {len(FILES)} good ones", fault,
               f"it alone failed ('{error}'), stored and served, then replayed: enriched; {enriched}; {outcome}")


def test_redis_restarted_while_enrichment_is_in_flight(rig: Rig) -> None:
    start_with_enricher(rig, batch_size=5)  # twelve enrichment messages, taken one after another
    feeder = rig.feed(FILES)
    feeder.join()
    rig.wait_terminal(len(FILES))
    seen: list[dict[str, int]] = []

    def half_way() -> bool:
        seen.append(rig.enrichment())
        return seen[-1].get("enriched", 0) > 0 and seen[-1]["in_hand"] > 0

    rig.wait_until(half_way, "enrichment half way", 60.0, poll_s=0.02)
    fault = rig.fault()
    pending = seen[-1]["pending"]
    rig.broker.restart()  # kill -9 and a new, empty server: every enrichment message is gone

    rig.wait_enriched(ENRICH_TIMEOUT_S, restart_exited=True)
    outcome = rig.verify()
    enriched = rig.verify_enrichment()
    assert rig.enrichment().get("failed", 0) == 0
    crashed = ", ".join(f"{service} (exit {status})" for service, status in rig.restarted) or "none"
    rig.report_enrichment("Redis kill -9 + restarted empty while enrichment is in flight, services left running", fault,
               f"{pending} articles pending at the fault; services that exited and were restarted: {crashed}; "
               f"{enriched}; {outcome}")
