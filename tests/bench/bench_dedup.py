"""Dedup stage (storage side, `index_articles`: the index lock's work) time per article, 1k to 1M indexed.

Run: python tests/bench/bench_dedup.py [--sizes 1000,10000,100000] [--probes 200] [--fillers auto] [--json]
     (make bench-full: --sizes 1000,10000,100000,1000000 --fillers random)

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth); a fresh database is made and dropped. The
index is filled by COPY (articles and their 32 band keys each) plus the originals of the near-duplicate
probes, then VACUUM ANALYZEd. Fillers: with real signatures, articles of random wikinews words with their
real shingle sets and MinHash (if that takes under FILLER_BUDGET_S); with random ones, a short placeholder
body, uniformly random uint32 signatures (which index like unrelated articles: their band keys are spread
as real ones are) and an 8-byte shingle set (never a candidate, so never read). Each probe (half
near-duplicates of an indexed original, half new wikinews articles) is inserted as storage would, its
its keys added (before the lock, as storage does), `index_articles` timed (lock, look-up of its keys,
confirmation, links, cluster merge), and rolled back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from common import database
from sqlalchemy import Engine, event, func, insert, or_, select, update

from services.worker.parsing import parse_drop
from shared.clusters import IndexBatch, add_keys, find_candidates, index_articles
from shared.db import create_db_engine, create_session_factory
from shared.migrate import upgrade_to_head
from shared.models import Article, ArticleLink
from shared.records import ParsedArticle
from shared.settings import PIPELINE_VERSION
from shared.similarity import NUM_PERM, band_keys, jaccard, shingle_hashes, shingles_bytes, signature, sketch

WIKINEWS = Path(__file__).resolve().parents[1] / "data" / "wikinews"
THRESHOLD = 0.8
FILLER_BUDGET_S = 180.0
CHUNK = 5000
QUERIES = {"pg_advisory_xact_lock": "lock", "JOIN lsh_buckets": "find keys",
           "SELECT id, shingles": "load candidates' shingles", "INSERT INTO article_links": "insert links",
           "FOR UPDATE": "recluster select", "UPDATE articles": "recluster update"}
Figures = dict[str, Any]
KINDS = ("near", "new")
FillerSource = tuple[list[str], list[int]]  # corpus words (with repeats), article lengths in words


@dataclass(frozen=True)
class Probe:
    kind: str  # "near" (a near-duplicate of an indexed original) or "new"
    article: ParsedArticle
    shingles: bytes
    minhash: bytes


def edited(data: bytes, rng: random.Random) -> bytes:
    """A near-duplicate drop: three words of one paragraph changed, one paragraph added."""
    lines = data.decode().rstrip("\n").split("\n")
    i = rng.randrange(2, len(lines) - 1)
    words = lines[i].split(" ")
    for j in rng.sample(range(len(words)), k=min(3, len(words))):
        words[j] = words[j].upper() if words[j].islower() else words[j].lower() + "s"
    lines[i] = " ".join(words)
    lines.insert(-1, "This article was updated after publication with comments from the officials involved.")
    return ("\n".join(lines) + "\n").encode()


def build_probes(count: int, rng: random.Random) -> tuple[list[ParsedArticle], list[Probe], FillerSource]:
    """Originals to index, probes (near-duplicates of the originals, and new articles), filler words."""
    parsed = [(p.read_bytes(), parse_drop(p.read_bytes())) for p in sorted(WIKINEWS.glob("*.txt"))]
    corpus = [(data, a) for data, a in parsed if isinstance(a, ParsedArticle)]
    rng.shuffle(corpus)
    originals, probes = [], []
    for data, article in corpus:
        long_enough = len(originals) < count // 2 and len(article.paragraphs) >= 4
        variant = parse_drop(edited(data, rng)) if long_enough else None
        if isinstance(variant, ParsedArticle) and jaccard(shingle_hashes(article.body),
                                                          shingle_hashes(variant.body)) >= 0.85:
            originals.append(article)
            probes.append(Probe("near", variant, *sketch(variant.body)))
        elif sum(p.kind == "new" for p in probes) < count - count // 2:
            probes.append(Probe("new", article, *sketch(article.body)))
    if len(probes) < count:
        raise SystemExit(f"the corpus gives only {len(probes)} probes")
    words = [a.body.split() for _, a in corpus]
    return originals, probes, ([w for ws in words for w in ws], [len(ws) for ws in words])


def filler_text(rng: random.Random, source: FillerSource) -> tuple[str, list[str]]:
    """Corpus words drawn at random (by frequency), in 60-word paragraphs, as long as a corpus article."""
    words, lengths = source
    paragraphs = [" ".join(rng.choices(words, k=60)) for _ in range(max(1, rng.choice(lengths) // 60))]
    return "\n\n".join(paragraphs), paragraphs


def copy_rows(conn: psycopg.Connection, rows: list[tuple[Any, ...]], sigs: np.ndarray, shingles: list[bytes]
              ) -> None:
    """COPY articles (id, content_hash, title, published_on, paragraphs, body, minhash, shingles) and their
    band keys."""
    with conn.cursor() as cur:
        ids = [r[0] for r in cur.execute("SELECT nextval(pg_get_serial_sequence('articles', 'id')) "
                                         "FROM generate_series(1, %s)", (len(rows),))]
        with cur.copy("COPY articles (id, content_hash, title, published_on, paragraphs, body, minhash, shingles, "
                      "encoding, pipeline_version, cluster_id) FROM STDIN") as copy:
            for article_id, row, sig, sh in zip(ids, rows, sigs, shingles, strict=True):
                copy.write_row((article_id, *row, sig.astype("<u4").tobytes(), sh, "utf-8", PIPELINE_VERSION,
                                article_id))
        keys = band_keys(sigs)
        with cur.copy("COPY lsh_buckets (band, bucket, article_id) FROM STDIN") as copy:
            for article_id, row in zip(ids, keys.tolist(), strict=True):
                for band, key in enumerate(row):
                    copy.write_row((band, key, article_id))
    conn.commit()


def fill(conn: psycopg.Connection, count: int, real: bool, source: FillerSource, rng: random.Random,
         first: int) -> None:
    np_rng = np.random.default_rng(rng.randrange(2**32))
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        if real:
            texts = [filler_text(rng, source) for _ in range(n)]
            sets = [shingle_hashes(body) for body, _ in texts]
            sigs, shingles = np.stack([signature(h) for h in sets]), [shingles_bytes(h) for h in sets]
        else:  # placeholders: never candidates, so their text and shingle sets are never read
            texts = [(f"filler {first + start + i}", [f"filler {first + start + i}"]) for i in range(n)]
            sigs = np_rng.integers(0, 2**32, size=(n, NUM_PERM), dtype=np.uint32)
            shingles = [np_rng.bytes(8) for _ in range(n)]
        rows = [(hashlib.sha256(body.encode()).hexdigest(), "Filler", None, json.dumps(paras), body)
                for body, paras in texts]
        copy_rows(conn, rows, sigs, shingles)


class QueryClock:
    """Seconds spent in each of the stage's statements while `on`."""

    def __init__(self, engine: Engine) -> None:
        self.on, self.totals = False, Counter[str]()
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, _cursor: Any, _statement: str, *_: Any) -> None:
        conn.info["started"] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        elapsed = time.perf_counter() - conn.info.pop("started", time.perf_counter())
        if self.on:
            self.totals[next((name for key, name in QUERIES.items() if key in statement), "other")] += elapsed


def probe_once(session: Any, probe: Probe, clock: QueryClock) -> tuple[float, int, int]:
    """Insert the probe's article, time `index_articles`; returns seconds, candidates and links (rolled back)."""
    row = probe.article.model_dump() | {"body": probe.article.body, "pipeline_version": PIPELINE_VERSION,
                                        "minhash": probe.minhash, "shingles": probe.shingles}  # as storage does
    article_id = session.execute(insert(Article).values(row).returning(Article.id)).scalar_one()
    session.execute(update(Article).where(Article.id == article_id).values(cluster_id=article_id))  # its own
    batch = IndexBatch.of([(article_id, probe.shingles, probe.minhash)])  # before the lock, as storage does
    add_keys(session, batch)
    found = len(find_candidates(session, batch)[article_id])
    clock.on = True
    start = time.perf_counter()
    index_articles(session, batch, THRESHOLD)
    elapsed = time.perf_counter() - start
    clock.on = False
    links = session.execute(select(func.count()).select_from(ArticleLink).where(
        or_(ArticleLink.article_id == article_id, ArticleLink.other_id == article_id))).scalar_one()
    session.rollback()
    return elapsed, found, links


def measure(engine: Engine, clock: QueryClock, probes: list[Probe], size: int) -> Figures:
    with create_session_factory(engine)() as session:
        for probe in probes[:5]:  # warm the caches and the connection
            probe_once(session, probe, clock)
        clock.totals.clear()
        results = [probe_once(session, probe, clock) for probe in probes]
    linked = {kind: sum(r[2] > 0 for r, p in zip(results, probes, strict=True) if p.kind == kind) for kind in KINDS}
    return {"size": size, **percentiles([r[0] for r in results]), "linked": linked,
            "mean_candidates": statistics.mean(r[1] for r in results),
            "query_ms_per_probe": {k: round(v * 1000 / len(probes), 3) for k, v in clock.totals.most_common()}}


def percentiles(seconds: list[float]) -> Figures:
    ms = sorted(s * 1000 for s in seconds)
    return {"median_ms": round(statistics.median(ms), 3), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3)}


def signature_seconds(body: str) -> float:
    start = time.perf_counter()
    sketch(body)
    return time.perf_counter() - start


def grow(url: str, originals: list[ParsedArticle], sizes: list[int], real: bool, source: FillerSource,
         rng: random.Random) -> Iterator[tuple[int, float]]:
    """Fill the index to each size in turn; yields the size and the seconds spent filling so far."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # bulk load: skip the FK triggers
        sets = [shingle_hashes(a.body) for a in originals]
        copy_rows(conn, [(a.content_hash, a.title, a.published_on, json.dumps(a.paragraphs), a.body)
                         for a in originals], np.stack([signature(h) for h in sets]), [shingles_bytes(h) for h in sets])
        indexed, fill_s = len(originals), 0.0
        for size in sizes:
            start = time.perf_counter()
            fill(conn, size - indexed, real, source, rng, indexed)
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE articles, lsh_buckets")
            conn.autocommit, indexed = False, size
            fill_s += time.perf_counter() - start
            yield size, fill_s


def run(sizes: list[int], count: int, fillers: str) -> Figures:
    rng = random.Random(20240601)
    originals, probes, source = build_probes(count, rng)
    if sizes[0] < len(originals):
        raise SystemExit(f"the smallest size must hold the {len(originals)} originals")
    per_sig = statistics.mean(signature_seconds(filler_text(rng, source)[0]) for _ in range(300))
    real = fillers == "real" or (fillers == "auto" and per_sig * (sizes[-1] - len(originals)) < FILLER_BUDGET_S)
    result: Figures = {"probes": len(probes), "threshold": THRESHOLD, "sizes": [],
                       "filler_signatures": "real" if real else "random", "real_signature_ms": round(per_sig * 1000, 3)}
    with database(f"newsflow_bench_dedup_{os.getpid()}") as url:
        upgrade_to_head(url)
        engine = create_db_engine(url)
        clock = QueryClock(engine)
        try:
            for size, fill_s in grow(url, originals, sizes, real, source, rng):
                result["sizes"].append(measure(engine, clock, probes, size) | {"fill_s": round(fill_s, 1)})
                print(f"measured {size} indexed (filled in {fill_s:.0f} s so far)", file=sys.stderr)
        finally:
            engine.dispose()
    result["signature"] = percentiles([signature_seconds(p.article.body) for p in probes])
    return result


def format_table(result: Figures) -> str:
    base = result["sizes"][0]["median_ms"]
    lines = [f"dedup stage (storage side: index_articles, one article per call), {result['probes']} probes "
             f"(half near-duplicates of indexed articles), threshold {result['threshold']}; filler signatures: "
             f"{result['filler_signatures']} (a real one costs {result['real_signature_ms']:.2f} ms)",
             f"{'indexed':>9}{'median ms':>11}{'p95 ms':>9}{'candidates':>12}{'linked near/new':>17}{'curve':>8}"]
    for s in result["sizes"]:
        linked = f"{s['linked']['near']}/{s['linked']['new']}"
        lines.append(f"{s['size']:>9}{s['median_ms']:>11.2f}{s['p95_ms']:>9.2f}{s['mean_candidates']:>12.2f}"
                     f"{linked:>17}{s['median_ms'] / base:>7.2f}x")
    lines.append("mean ms per probe by statement:")
    lines += [f"{s['size']:>9}: " + ", ".join(f"{k} {v:.2f}" for k, v in s["query_ms_per_probe"].items())
              for s in result["sizes"]]
    sig = result["signature"]
    lines.append(f"worker side (shingles + signature, per article): median {sig['median_ms']:.2f} ms, "
                 f"p95 {sig['p95_ms']:.2f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="index sizes (default 1000,10000,100000)")
    parser.add_argument("--probes", type=int, default=200, help="articles measured per size (default 200)")
    parser.add_argument("--fillers", choices=("auto", "real", "random"), default="auto",
                        help=f"filler signatures: real, random, or auto (real if under {FILLER_BUDGET_S:.0f} s)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # drop the database (finally blocks) on kill too
    signal.signal(signal.SIGINT, signal.default_int_handler)  # and on Ctrl-C, even if started in the background
    start = time.perf_counter()
    result = run(sorted(int(s) for s in args.sizes.split(",")), max(2, args.probes), args.fillers)
    result["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2) if args.json else format_table(result) + f"\ntotal run {result['total_s']} s")


if __name__ == "__main__":
    main()
