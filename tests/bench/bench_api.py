"""The consumers' API under load (SPEC section 9): p50/p95 per route with 20 concurrent clients over 100,000
stored articles, the CPU each request costs, and the change feed's changes/s to one consumer.

Run: python tests/bench/bench_api.py [--articles 100000] [--clients 20] [--seconds 5] [--database NAME]
                                     [--workers 1,2] [--code DIR,DIR]

The articles are variants of the wikinews corpus (tests/data/wikinews): titles and bodies made of its sentences,
dates over two years (many articles a day), sources, languages, countries, keywords, entities and clusters in
realistic shares, loaded with COPY and then inserted with the search vector storage computes. Every article
has a `created` and an `enriched` change in the feed. With --database NAME the loaded corpus is kept in that
database and reused by the next run with the same --articles and --seed (loading 100k takes minutes).

The api is the real `newsflow api` process (or `--workers N` of them on one port); the clients are Debian's
`wrk` (installed when missing, as root), 20 connections in a closed loop, each sending its next request as soon
as the last one answered, through 2,000 requests drawn per route: latency from send to the last byte. Per
route it prints p50, p95, requests/s and CPU milliseconds per request of the api's processes, of PostgreSQL's
backends for the bench's database, of wrk itself and of the whole machine: on a shared, noisy 2-core machine
the CPU per request is the figure that survives. `--code` runs the same requests against other checkouts' api
(`--code /path/to/main,.`: before and after, in one run). Targets: p95 under 50 ms for list, filter and
search; at least 5,000 changes/s to one consumer following the feed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import common
import httpx
import psycopg
from common import CpuMeter, database, db_url, postgres_processes, service, tree, workspace
from sqlalchemy import delete
from sqlalchemy.orm import Session
from wrk_load import ensure_wrk, run_wrk

from shared.db import create_db_engine, create_session_factory, transaction
from shared.keys import Role, create_key
from shared.listing import ArticleQuery, Sort, entity_ids, page_statement, phrase_window_statement
from shared.migrate import upgrade_to_head
from shared.models import ApiKey
from shared.search import search_vector_sql
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
WIKINEWS = ROOT / "tests" / "data" / "wikinews"
SOURCES = [f"Source {i}" for i in range(40)]
COUNTRIES = ["US", "GB", "FR", "DE", "JP", "CN", "IN", "BR", "RU", "AU", "CA", "IT", "ES", "MX", "ZA"]
FIRST_DAY, DAYS = date(2023, 1, 1), 730
ENTITY_TYPES = ("person", "organization", "place")
PATHS_PER_ROUTE = 2000  # requests drawn per route, sent in turn
WARM_UP_S = 1.0

STAGE = ("CREATE UNLOGGED TABLE stage (n int, title text, body text, published_on date, source text, "
         "language text, countries text[], keywords text[])")
INSERT = f"""
INSERT INTO articles (id, content_hash, title, published_on, source, paragraphs, body, encoding, pipeline_version,
                      cluster_id, is_canonical, language, countries, keywords, enrichment_status, enrichment_version,
                      search_vector)
SELECT n, md5(n::text) || md5(body), title, published_on, source, jsonb_build_array(body), body, 'utf-8', 'bench',
       CASE WHEN (n - 1) % 40 < 4 THEN n - (n - 1) % 40 ELSE n END, (n - 1) % 40 = 0 OR (n - 1) % 40 >= 4,
       language, countries, keywords, 'enriched', 'bench',
       {search_vector_sql("'english'::regconfig", "title", "body")}
FROM stage
"""


def sentences() -> list[str]:
    found = []
    for path in sorted(WIKINEWS.glob("*.txt")):
        lines = path.read_text(errors="replace").splitlines()[1:]
        for line in lines:
            found += [s.strip() + "." for s in line.split(". ") if len(s.split()) > 5]
    return found


def load(url: str, count: int, rng: random.Random) -> None:
    """COPY the articles into a staging table, insert them with their search vectors (a trigger writes their
    keywords' rows), then their entities (with their articles' sort keys) and their changes (created, enriched),
    and analyze."""
    pool = sentences()
    words = sorted({w.lower().strip(".,\"'()") for s in pool[:3000] for w in s.split() if len(w) > 5})[:400]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STAGE)
        with conn.cursor().copy("COPY stage FROM STDIN") as copy:
            for n in range(1, count + 1):
                day = None if rng.random() < 0.02 else FIRST_DAY + timedelta(days=rng.randrange(DAYS))
                copy.write_row((n, " ".join(rng.choice(pool).split()[:10]), " ".join(rng.sample(pool, 6)), day,
                                rng.choice(SOURCES), rng.choices(("en", "fr", "de"), (90, 6, 4))[0],
                                rng.sample(COUNTRIES, rng.choice((0, 1, 1, 2))), rng.sample(words, 3)))
        conn.execute(INSERT)
        conn.execute("SELECT setval(pg_get_serial_sequence('articles', 'id'), max(id)) FROM articles")
        names = [(rng.choice(ENTITY_TYPES), f"Entity {i}") for i in range(2000)]
        conn.execute("INSERT INTO entities (type, name) SELECT * FROM unnest(%s::text[], %s::text[])",
                     ([t for t, _ in names], [n for _, n in names]))
        buffer = io.StringIO()
        for n in range(1, count + 1):
            for entity in {int(rng.paretovariate(1.2)) % 2000 + 1 for _ in range(3)}:
                buffer.write(f"{n}\t{entity}\t{rng.randint(1, 5)}\n")
        conn.execute("CREATE UNLOGGED TABLE links (article_id bigint, entity_id bigint, count int)")
        with conn.cursor().copy("COPY links FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.execute("INSERT INTO article_entities (article_id, entity_id, count, sort_date) "
                     "SELECT l.article_id, l.entity_id, l.count, a.sort_date FROM links l "
                     "JOIN articles a ON a.id = l.article_id")
        conn.execute("DROP TABLE links")
        conn.execute("INSERT INTO article_changes (article_id, change) SELECT id, c FROM articles, "
                     "unnest(ARRAY['created', 'enriched']) AS c ORDER BY id, c")
        conn.execute("DROP TABLE stage")
        conn.execute("VACUUM ANALYZE")


def routes(rng: random.Random, count: int, words: list[str]) -> dict[str, object]:
    """Per route, a function giving the next request's path and parameters."""
    day = lambda: FIRST_DAY + timedelta(days=rng.randrange(DAYS))  # noqa: E731
    return {
        "list": lambda: ("/v1/articles", {}),
        "list, limit 100": lambda: ("/v1/articles", {"limit": 100}),
        "filter source": lambda: ("/v1/articles", {"source": rng.choice(SOURCES)}),
        "filter country": lambda: ("/v1/articles", {"country": rng.choice(COUNTRIES)}),
        "filter language=de": lambda: ("/v1/articles", {"language": "de"}),
        "filter keyword": lambda: ("/v1/articles", {"keyword": rng.choice(words)}),
        "filter entity": lambda: ("/v1/articles", {"entity": f"Entity {rng.randrange(50)}"}),
        "filter from/to (a week)": lambda: ("/v1/articles", {"from": str(d := day()), "to": str(d + timedelta(7))}),
        "filter canonical": lambda: ("/v1/articles", {"canonical": "true"}),
        "filter source+country+from": lambda: ("/v1/articles", {
            "source": rng.choice(SOURCES), "country": rng.choice(COUNTRIES), "from": str(day())}),
        "search word": lambda: ("/v1/articles", {"q": rng.choice(words)}),
        "search phrase": lambda: ("/v1/articles", {"q": f'"{rng.choice(["prime minister", "united states"])}"'}),
        "search a or b -c": lambda: ("/v1/articles", {"q": " or ".join(rng.sample(words, 2)) + " -" +
                                                      rng.choice(words)}),
        "search relevance": lambda: ("/v1/articles", {"q": rng.choice(words), "sort": "relevance"}),
        "search + filter": lambda: ("/v1/articles", {"q": rng.choice(words), "country": rng.choice(COUNTRIES)}),
        "article": lambda: (f"/v1/articles/{rng.randint(1, count)}", {}),
        "cluster": lambda: (f"/v1/clusters/{rng.randint(1, count)}", {}),
        "stats timeline (30 days)": lambda: ("/v1/stats/timeline", {"to": str(day())}),
        "entities (30 days)": lambda: ("/v1/entities", {"from": str(d := day()), "to": str(d + timedelta(30))}),
    }


def follow_feed(base: str, key: str, limit: int) -> tuple[int, float]:
    """One consumer following the feed from the start to its end: (changes, seconds)."""
    served, cursor = 0, None
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        start = time.perf_counter()
        while True:
            response = http.get("/v1/changes", params={"limit": limit, **({"after": cursor} if cursor else {})})
            if response.status_code != 200:
                raise RuntimeError(f"the change feed answered {response.status_code}: {response.text[:500]}")
            page = response.json()
            if not page["items"]:
                return served, time.perf_counter() - start
            served += len(page["items"])
            cursor = page["next_cursor"]


EXPLAINED = {
    "list": ArticleQuery(), "filter source": ArticleQuery(source=SOURCES[3]),
    "filter country": ArticleQuery(country="JP"), "filter language=de": ArticleQuery(language="de"),
    "filter entity": ArticleQuery(entity="Entity 7"), "filter canonical": ArticleQuery(canonical=True),
    "filter from/to (a week)": ArticleQuery(date_from=date(2024, 2, 1), date_to=date(2024, 2, 7)),
    "filter cluster": ArticleQuery(cluster=41), "search word": ArticleQuery(q="government"),
    "search phrase": ArticleQuery(q='"prime minister"'),
    "search relevance": ArticleQuery(q="government", sort=Sort.RELEVANCE),
    "filter source+country+from": ArticleQuery(source=SOURCES[3], country="JP", date_from=date(2024, 1, 1)),
}


def explain(url: str, keyword: str) -> None:
    """Each listing's first page as PostgreSQL runs it: the indexes its plan reads, and its execution time."""
    queries = {**EXPLAINED, "filter keyword": ArticleQuery(keyword=keyword)}
    engine = create_db_engine(url)
    print(f"{'first page, as planned':32} {'ms':>8}  indexes read")
    with engine.connect() as conn, Session(conn) as session:
        statements = {name: page_statement(query, None, 20, entity_ids(session, query))
                      for name, query in queries.items()}
        phrase = EXPLAINED["search phrase"]
        statements["search phrase, window first"] = phrase_window_statement(session, phrase, None, 20, None)
        for name, statement in statements.items():
            if statement is None:
                continue
            compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
            [[plan]] = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled),
                                            compiled.params).one()
            indexes = sorted(set(re.findall(r'"Index Name": "([^"]+)"', json.dumps(plan))))
            print(f"{name:32} {plan['Execution Time']:8.2f}  {', '.join(indexes) or 'none (sequential scan)'}")
    engine.dispose()


@contextmanager
def corpus_database(args: argparse.Namespace, rng: random.Random) -> Iterator[str]:
    """The loaded database: a scratch one dropped at the end, or with --database NAME one kept for the next run,
    reused when it already holds this corpus (same article count and seed), loaded anew otherwise."""
    if args.database is None:
        with database(f"newsflow_bench_api_{os.getpid()}") as url:
            load_corpus(url, args, rng)
            yield url
        return
    url = db_url(args.database)
    mark = f"bench_api articles={args.articles} seed={args.seed}"
    with psycopg.connect(common.ADMIN_URL, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.database,)).fetchone()
        if exists:
            with psycopg.connect(url) as conn:
                found = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                     "WHERE datname = current_database()").fetchone()
            if found and found[0] == mark:
                upgrade_to_head(url)  # a migration newer than the load applies to the kept corpus too
                print(f"corpus: reusing database {args.database} ({mark})", flush=True)
                yield url
                return
            admin.execute(f'DROP DATABASE "{args.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.database}"')
    load_corpus(url, args, rng)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{args.database}\" IS '{mark}'")
    yield url


def load_corpus(url: str, args: argparse.Namespace, rng: random.Random) -> None:
    upgrade_to_head(url)
    started = time.perf_counter()
    load(url, args.articles, rng)
    print(f"corpus: {args.articles:,} articles (wikinews sentences; 2 % undated, {DAYS} days, 1 in 10 in a "
          f"story of 4), loaded in {time.perf_counter() - started:.0f} s", flush=True)


@dataclass(frozen=True)
class Variant:
    """One api to measure: the checkout whose code it runs, and its processes."""

    code: Path
    workers: int

    @property
    def label(self) -> str:
        return f"{self.code.name} code, {self.workers} api process{'es' if self.workers > 1 else ''}"

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-m", "services.api", "--port", str(port),
                *(["--workers", str(self.workers)] if self.workers > 1 else [])]


def variants(args: argparse.Namespace) -> list[Variant]:
    found = []
    for code in args.code:
        takes_workers = "--workers" in (code / "services" / "api" / "__main__.py").read_text()
        for workers in args.workers:
            if workers > 1 and not takes_workers:
                print(f"skipped: {code} has no `newsflow api --workers`", flush=True)
                continue
            found.append(Variant(code.resolve(), workers))
    return found


def run(args: argparse.Namespace, logs: Path) -> None:
    with corpus_database(args, random.Random(args.seed)) as url:
        engine = create_db_engine(url)
        with transaction(create_session_factory(engine)) as session:
            session.execute(delete(ApiKey).where(ApiKey.name == "bench"))
            key = create_key(session, "bench", Role.READER)
        engine.dispose()
        with psycopg.connect(url) as conn:
            words = [r[0] for r in conn.execute(
                "SELECT k FROM (SELECT DISTINCT unnest(keywords) AS k FROM articles WHERE id <= 5000) AS w "
                "ORDER BY k LIMIT 200")]
        if not args.routes:
            explain(url, words[0])
        rng = random.Random(args.seed + 1)  # its own: a reused corpus gets the same requests as a fresh one
        requests = {name: [path_of(*make()) for _ in range(PATHS_PER_ROUTE)]
                    for name, make in routes(rng, args.articles, words).items()}
        if args.routes:
            requests = {name: paths for name, paths in requests.items() if name in args.routes}
        dbname = url.rsplit("/", 1)[1]
        for variant in variants(args):
            measure_variant(variant, url, dbname, key, requests, args, logs)


def path_of(path: str, params: dict[str, object]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def measure_variant(variant: Variant, url: str, dbname: str, key: str, requests: dict[str, list[str]],
                    args: argparse.Namespace, logs: Path) -> None:
    port = free_port()
    env = {**os.environ, "NEWSFLOW_DATABASE_URL": url, "NEWSFLOW_BROKER_URL": args.broker,
           "PYTHONPATH": str(variant.code), "NEWSFLOW_LOG_LEVEL": "WARNING"}
    log = logs / f"api-{variant.code.name}-{variant.workers}.log"
    with service(variant.argv(port), env, log) as api:
        base = f"http://127.0.0.1:{port}"
        wait_for(base)
        print(f"\n{variant.label}: {args.clients} clients in a closed loop (wrk), {args.seconds:g} s per route; "
              "latency in ms, CPU in ms per request", flush=True)
        print(f"{'route':28} {'p50':>7} {'p95':>7} {'req/s':>6} {'api':>6} {'pg':>6} {'wrk':>6} {'machine':>7}")
        for name, paths in requests.items():
            run_wrk(base, key, paths, clients=args.clients, seconds=WARM_UP_S)
            meter = CpuMeter({"api": lambda: tree(api.pid), "pg": lambda: postgres_processes(dbname)})
            with meter:
                load = run_wrk(base, key, paths, clients=args.clients, seconds=args.seconds)
            cpu = meter.seconds()
            per = {group: 1000 * cpu[group] / load.requests for group in ("api", "pg", "machine")}
            print(f"{name:28} {load.p50_ms:7.1f} {load.p95_ms:7.1f} {load.rate:6.0f} {per['api']:6.2f} "
                  f"{per['pg']:6.2f} {1000 * load.client_cpu_s / load.requests:6.2f} {per['machine']:7.2f}",
                  flush=True)
        changes, seconds = follow_feed(base, key, args.feed_limit)
        print(f"change feed, one consumer, limit={args.feed_limit}: {changes:,} changes in {seconds:.1f} s = "
              f"{changes / seconds:,.0f} changes/s (target 5,000)", flush=True)


def wait_for(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the api did not answer")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="per route, after a 1 s warm-up (default 5)")
    parser.add_argument("--feed-limit", type=int, default=1000, help="changes per feed page (default 1000)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--database", help="keep the loaded corpus in this database and reuse it next time")
    parser.add_argument("--workers", type=lambda v: [int(n) for n in v.split(",")], default=[1],
                        help="api processes (`newsflow api --workers N`), a comma-separated list (default 1)")
    parser.add_argument("--code", type=lambda v: [Path(p) for p in v.split(",")], default=[ROOT],
                        help="checkouts whose api to run, comma-separated (default this one): before and after "
                             "in one run, against the same corpus and the same requests")
    parser.add_argument("--routes", action="append", help="only this route (by its name; repeat for more)")
    parser.add_argument("--logs", type=Path, help="keep the api logs in this folder")
    parser.add_argument("--broker", default=common.BROKER_URL, help="a Redis URL for the api's readiness only")
    args = parser.parse_args(argv)
    common.exit_on_sigterm()
    ensure_wrk()
    with workspace(args.logs, "newsflow-bench-api-") as logs:
        run(args, logs)


if __name__ == "__main__":
    main()
