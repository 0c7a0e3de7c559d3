"""`newsflow status` on a ledger of a million drops: the time build_status takes, and the indexes its plans use.

Run: python tests/bench/bench_status.py [--drops 1000000] [--repeat 3]

Seeds a fresh database in PostgreSQL itself (generate_series, no client round trips): `--drops` drops spread
over 7 days (90% stored, 5% duplicate, 3% rejected, 1% failed, 0.5% vanished, 0.5% still queued in parse or
store), one article per stored drop across 200 sources, most enriched, and 20 live heartbeats. Then times
the status object (median of --repeat) and prints, per query, the indexes its plan reads. Target (SPEC
section 7): under one second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
from common import database, newsflow, service_env
from sqlalchemy import text

from shared import status as status_module
from shared.db import create_db_engine, create_session_factory

SEED = """
INSERT INTO articles (id, content_hash, title, paragraphs, body, encoding, pipeline_version, source, created_at,
                      enrichment_status, enrichment_version, enriched_at, cluster_id, is_canonical)
SELECT g, md5(g::text) || md5((-g)::text), 'title ' || g, '[]', 'body', 'utf-8', '1', 'source ' || (g %% 200),
       now() - (g %% 604800) * interval '1 second',
       CASE WHEN g %% 50 = 0 THEN 'pending' ELSE 'enriched' END, CASE WHEN g %% 50 = 0 THEN NULL ELSE '1' END,
       CASE WHEN g %% 50 = 0 THEN NULL ELSE now() - (g %% 604800) * interval '1 second' + interval '2 seconds' END,
       g, true
FROM generate_series(1, %(articles)s) g;
SELECT setval(pg_get_serial_sequence('articles', 'id'), %(articles)s);
INSERT INTO drops (path, sha256, size, mtime_ns, host, status, reason, detail, article_id, discovered_at,
                   finished_at, stage, sent_at)
SELECT '/drops/' || g || '.txt', md5(g::text) || md5(g::text), 2000, 0, 'bench', s.status, s.reason,
       CASE WHEN s.reason IS NULL THEN NULL ELSE 'seeded' END,
       CASE WHEN s.status = 'stored' THEN g WHEN s.status = 'duplicate' THEN 1 + g %% %(articles)s END,
       now() - (g %% 604800) * interval '1 second' - interval '1 second',
       CASE WHEN s.status = 'queued' THEN NULL ELSE now() - (g %% 604800) * interval '1 second' END,
       CASE WHEN s.status = 'queued' THEN (CASE WHEN g %% 2 = 0 THEN 'parse' ELSE 'store' END) END,
       CASE WHEN s.status = 'queued' THEN now() - (g %% 600) * interval '1 second' END
FROM generate_series(1, %(drops)s) g,
     LATERAL (SELECT CASE WHEN g <= %(articles)s THEN 'stored'
                          WHEN g %% 200 < 100 THEN 'duplicate' WHEN g %% 200 < 160 THEN 'rejected'
                          WHEN g %% 200 < 180 THEN 'failed' WHEN g %% 200 < 190 THEN 'vanished' ELSE 'queued' END
                     AS status,
                     CASE WHEN g <= %(articles)s THEN NULL
                          WHEN g %% 200 < 100 THEN 'exact_duplicate' WHEN g %% 200 < 160 THEN 'not_text'
                          WHEN g %% 200 < 180 THEN 'error' WHEN g %% 200 < 190 THEN 'vanished' END AS reason) s;
INSERT INTO heartbeats (node, service, host, pid, queues, concurrency, active)
SELECT 'worker-' || g || '@bench', 'worker', 'bench', g, '{newsflow.parse}', 2, 1 FROM generate_series(1, 20) g;
ANALYZE;
"""
QUERIES = {name: getattr(status_module, name) for name in (
    "UNFINISHED_DROPS", "UNFINISHED_ENRICHMENT", "WORKERS", "DROP_TOTALS", "ARTICLE_TOTALS", "DROP_RATES",
    "ENRICH_RATES", "STORED_LAG", "ENRICHED_LAG", "REPLAY_BACKLOG", "SOURCES")}
PARAMS = {"live": timedelta(seconds=15), "window": timedelta(minutes=15), "days": timedelta(days=7)}


def indexes_used(plan: dict) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= indexes_used(child)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with database(f"newsflow_bench_status_{os.getpid()}") as url:
        subprocess.run(newsflow("migrate"), env=service_env(dict(os.environ), url), check=True, capture_output=True)
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in SEED.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"drops": args.drops, "articles": int(args.drops * 0.9)})
        seeded_s = time.perf_counter() - started
        sessions = create_session_factory(create_db_engine(url))
        with sessions() as session, session.begin():  # what the watcher does every 5 minutes
            begin = time.perf_counter()
            status_module.refresh_sources(session)
            refresh_s = time.perf_counter() - begin
        times = []
        for _ in range(max(1, args.repeat)):
            with sessions() as session:
                begin = time.perf_counter()
                found = status_module.build_status(session, lambda queue: 0)
                times.append(time.perf_counter() - begin)
        plans, query_ms = {}, {}
        with sessions() as session:
            for name, query in QUERIES.items():
                explained = session.execute(text(f"EXPLAIN (FORMAT JSON) {query.text}"), PARAMS).scalar_one()
                plans[name] = sorted(indexes_used(explained[0]["Plan"])) or ["(sequential scan)"]
                begin = time.perf_counter()
                session.execute(query, PARAMS).all()
                query_ms[name] = (time.perf_counter() - begin) * 1000
    print(f"ledger: {args.drops:,} drops, {int(args.drops * 0.9):,} articles (seeded in {seeded_s:.0f} s); "
          f"totals {json.dumps(found['totals']['drops'])}", file=sys.stderr)
    print(f"status object over {args.drops:,} drops: median {statistics.median(times) * 1000:.0f} ms of "
          f"{len(times)} runs (target < 1,000 ms); runs: " + ", ".join(f"{t * 1000:.0f} ms" for t in times))
    print(f"  per-source figures refreshed (by the watcher, every {status_module.SOURCES_REFRESH_S} s) in "
          f"{refresh_s * 1000:.0f} ms")
    for name, used in plans.items():
        print(f"  {name:<22} {query_ms[name]:7.1f} ms  {', '.join(used)}")


if __name__ == "__main__":
    main()
