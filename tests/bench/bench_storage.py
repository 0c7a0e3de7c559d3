"""Storage alone: one `newsflow storage` process fed ready outcomes through its queue; drops/s and lock time.

Run: python tests/bench/bench_storage.py [--drops 3200] [--repeat 3] [--batch N] [--json] [--logs DIR]

The corpus (tests/bench/corpus.py) is parsed and sketched in this process, as the workers would, and its
drops registered in a fresh database; then the outcome messages (`--batch` drops each, the pipeline's
default) are put on the store queue of one warm `newsflow storage` (its default concurrency unless
`--concurrency`) told to stop consuming it, which is then told to start. Timed: from that start to the last
drop terminal, so the window holds storage's work and not the sender's (fill_queue). From the
storage's own log ("batch stored" lines) comes the time it held the index lock, the critical section that
every storage process shares: per article indexed, and as a share of the run (1 / share is how many storage
processes the lock would allow).

Baseline, same run: what a user would write instead, in one process: one INSERT (and commit) per article,
with no near-duplicate index at all. Target (SPEC section 9): at least 2,000 drops/s per storage process.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import psycopg
from celery import Celery
from common import (
    CpuMeter,
    database,
    exit_on_sigterm,
    flush_broker,
    newsflow,
    postgres_processes,
    service,
    service_env,
    tree,
    wait_ready,
    workspace,
)
from corpus import build_corpus

from services.worker.stage import parse_one, with_search_vectors
from shared.celery_app import create_celery
from shared.db import create_db_engine, create_session_factory, transaction
from shared.intake import read_file, register_reads
from shared.queues import Queue, TaskName
from shared.records import DropOutcome
from shared.settings import PipelineSettings, StorageSettings

TERMINAL_TIMEOUT_S = 600.0
POLL_S = 0.02
Figures = dict[str, Any]


def prepare(url: str, files: list[Path]) -> list[DropOutcome]:
    """Migrate, register the drops, and make their outcomes as a worker would, search vectors and all (outside
    the timed window)."""
    subprocess.run(newsflow("migrate"), env=service_env(dict(os.environ), url), check=True, capture_output=True)
    settings = PipelineSettings()
    engine = create_db_engine(url)
    blobs = {str(f): f.read_bytes() for f in files}
    try:
        with transaction(create_session_factory(engine)) as session:
            registered = register_reads(session, [read_file(f, settings.max_bytes) for f in files], host="bench",
                                        max_bytes=settings.max_bytes)
            outcomes = [parse_one(r.drop_id, blobs[r.path], settings.max_bytes, "bench") for r in registered]
            return with_search_vectors(session, outcomes)
    finally:
        engine.dispose()


def queued_count(conn: psycopg.Connection) -> int:
    """Drops not yet terminal: from the partial index of queued drops, so that polling every POLL_S costs
    PostgreSQL next to nothing (counting the terminal ones read the whole table: 5% of its CPU in the run)."""
    return conn.execute("SELECT count(*) FROM drops WHERE status = 'queued'").fetchone()[0]


def fill_queue(app: Celery, node: str, messages: list[list[dict[str, Any]]]) -> None:
    """Put every message in the store queue while the (warm) storage process is not consuming it, so that the
    timed window holds storage's work only, not the producer's: sending the 32 messages of the 3,200-drop corpus
    costs the sender about 0.3 s of CPU, which on 2 cores is a tenth of what the machine has in the window."""
    for reply in app.control.cancel_consumer(Queue.STORE.value, destination=[node], reply=True, timeout=10):
        if "ok" not in reply.get(node, {}):
            raise RuntimeError(f"storage would not stop consuming its queue: {reply}")
    for message in messages:
        app.send_task(TaskName.STORE, kwargs={"outcomes": message})


def consume(app: Celery, node: str) -> None:
    """Start the storage process on its filled queue (the clock is running)."""
    replies = app.control.add_consumer(Queue.STORE.value, destination=[node], reply=True, timeout=10)
    if not any("ok" in reply.get(node, {}) for reply in replies):
        raise RuntimeError(f"storage would not consume its queue again: {replies}")


def lock_figures(log: Path) -> Figures:
    """Sum of the storage's "batch stored" lines: drops, articles indexed, time holding the index lock."""
    batches = [json.loads(line) for line in log.read_text().splitlines()
               if line.startswith("{") and '"batch stored"' in line]
    articles = sum(b["counts"].get("stored", 0) for b in batches)
    return {"batches": len(batches), "articles": articles, "lock_s": sum(b["lock_held_ms"] for b in batches) / 1000,
            "batch_s": sum(b["batch_ms"] for b in batches) / 1000}


def storage_once(files: list[Path], batch: int, concurrency: int, run: int, logs: Path) -> Figures:
    flush_broker()
    with database(f"newsflow_bench_storage_{os.getpid()}_{run}") as url:
        outcomes = prepare(url, files)
        messages = [[o.model_dump(mode="json") for o in outcomes[i:i + batch]] for i in range(0, len(outcomes), batch)]
        env = service_env(dict(os.environ), url, NEWSFLOW_LOG_JSON="true", NEWSFLOW_PIPELINE__BATCH_SIZE=str(batch))
        name, log = f"storage-bench{os.getpid()}@r{run}", logs / f"storage-r{run}.log"
        argv = newsflow("storage", "-n", name, "--concurrency", str(concurrency))
        with service(argv, env, log) as proc, psycopg.connect(url) as conn:
            wait_ready([name], [proc])
            app = create_celery(common.BROKER_URL)
            fill_queue(app, name, messages)
            groups = {"storage": lambda: tree(proc.pid), "postgres": lambda: postgres_processes(url.rsplit("/", 1)[1])}
            with CpuMeter(groups) as meter:
                start = time.perf_counter()
                consume(app, name)
                while queued_count(conn):
                    if time.perf_counter() - start > TERMINAL_TIMEOUT_S or proc.poll() is not None:
                        raise RuntimeError(f"storage did not finish; see {log}")
                    time.sleep(POLL_S)
                elapsed = time.perf_counter() - start
            app.close()
            counts = dict(conn.execute("SELECT status, count(*) FROM drops GROUP BY status").fetchall())
    cpu = meter.seconds()
    return {"drops_per_s": len(outcomes) / elapsed, "elapsed_s": elapsed, "counts": counts,
            "storage_cpu_ms": cpu["storage"] * 1000 / len(outcomes),
            "postgres_cpu_ms": cpu["postgres"] * 1000 / len(outcomes)} | lock_figures(log)


NAIVE_TABLE = ("CREATE TABLE naive_articles (id bigserial PRIMARY KEY, content_hash text UNIQUE, title text, "
               "published_on date, source text, body text, shingles bytea, minhash bytea)")


def naive_once(outcomes: list[DropOutcome], run: int) -> float:
    """A user's storage loop: one INSERT and one commit per article (exact duplicates by the unique key)."""
    with database(f"newsflow_bench_storage_naive_{os.getpid()}_{run}") as url, psycopg.connect(url) as conn:
        conn.execute(NAIVE_TABLE)
        conn.commit()
        start = time.perf_counter()
        for o in outcomes:
            decoded = DropOutcome.model_validate(o.model_dump(mode="json"))  # as it would arrive
            if decoded.article is not None:
                a = decoded.article
                conn.execute("INSERT INTO naive_articles (content_hash, title, published_on, source, body, shingles, "
                             "minhash) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                             (a.content_hash, a.title, a.published_on, a.source, a.body,
                              base64.b64decode(decoded.shingles or ""), base64.b64decode(decoded.minhash or "")))
            conn.commit()
        return len(outcomes) / (time.perf_counter() - start)


def run(drops: int, repeat: int, batch: int, concurrency: int, logs: Path) -> Figures:
    folder = logs / "drops"
    folder.mkdir()
    corpus = build_corpus(folder, drops)
    runs, naive = [], []
    for r in range(repeat):  # interleaved: a noisy moment hits both
        runs.append(storage_once(corpus.files, batch, concurrency, r, logs))
        with database(f"newsflow_bench_storage_prep_{os.getpid()}_{r}") as url:
            naive.append(naive_once(prepare(url, corpus.files), r))
        print(f"run {r + 1}/{repeat}: storage {runs[-1]['drops_per_s']:.0f} drops/s, naive {naive[-1]:.0f}",
              file=sys.stderr)
    return {"corpus": corpus.composition(), "batch": batch, "concurrency": concurrency, "runs": runs, "naive": naive}


def median(runs: list[Figures], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def format_table(result: Figures) -> str:
    runs, naive = result["runs"], statistics.median(result["naive"])
    rate = median(runs, "drops_per_s")
    cores = os.cpu_count() or 1
    lock_ms = statistics.median(r["lock_s"] * 1000 / max(1, r["articles"]) for r in runs)
    lock_share = statistics.median(r["lock_s"] / r["elapsed_s"] for r in runs)
    return "\n".join([
        f"corpus: {result['corpus']}; {result['batch']} drops per message; median of {len(runs)} runs",
        f"storage, one `newsflow storage` (Celery concurrency {result['concurrency']}) through its queue: "
        f"{rate:,.0f} drops/s (target 2,000), "
        f"{rate / naive:.2f}x a one-INSERT-per-article loop without any index ({naive:,.0f} drops/s)",
        f"  CPU per drop: storage {median(runs, 'storage_cpu_ms'):.3f} ms, "
        f"PostgreSQL {median(runs, 'postgres_cpu_ms'):.3f} ms (so {cores} cores allow at most "
        f"{cores * 1000 / (median(runs, 'storage_cpu_ms') + median(runs, 'postgres_cpu_ms')):,.0f} drops/s)",
        f"  index lock held: {lock_ms:.3f} ms per article indexed, {lock_share:.0%} of the run "
        f"(the shared critical section: at most {1 / max(lock_share, 1e-9):.1f}x this rate across storage processes)",
        "  runs: " + ", ".join(f"{r['drops_per_s']:.0f} drops/s {r['counts']}" for r in runs),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=3200, help="corpus size (default 3200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs (default 3; the median is printed)")
    parser.add_argument("--batch", type=int, default=PipelineSettings().batch_size, help="drops per message")
    parser.add_argument("--concurrency", type=int, default=StorageSettings().concurrency,
                        help="storage pool processes (default: newsflow storage's, as deployed)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--logs", type=Path, help="keep the storage logs and drops in this folder")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14", help="Redis database to use (flushed)")
    args = parser.parse_args(argv)
    common.BROKER_URL = args.broker  # service_env, wait_ready and flush_broker read it
    exit_on_sigterm()
    with workspace(args.logs, "newsflow-bench-storage-") as logs:
        result = run(args.drops, max(1, args.repeat), args.batch, args.concurrency, logs)
    print(json.dumps(result, indent=2, default=str) if args.json else format_table(result))


if __name__ == "__main__":
    main()
