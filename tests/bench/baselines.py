"""The one-process scripts a user would write instead of newsflow (SPEC section 9's baselines), kept honest.

Run: python tests/bench/baselines.py {datasketch,enrichment} FOLDER [--database-url URL] [--json]

datasketch: for each *.txt file in sorted order: read; a simple parse (header `date YYYY-MM-DD title`,
one paragraph a line, the last line dropped if it is a short lower-case credit); SHA-256 of the body
with whitespace and case folded, and the file skipped if that text was seen (no row: the cheapest
reading of "skip"); otherwise a datasketch MinHash (num_perm=128, default SHA-1 hash, word 5-shingles
lowercase with punctuation removed, fed with `update_batch`, the documented fast path), an LSH query and
insert (in-memory `MinHashLSH(threshold=0.8, num_perm=128)`), and one INSERT committed per file.

enrichment: the same, plus per stored article the enrichment newsflow does, through newsflow's own
`Enricher.enrich` called with that one article (so `nlp.pipe` of a single text, like `nlp(text)`):
the same spaCy model and components, lingua languages, YAKE on the lead, VADER per sentence, entity
and country rules. A hand-written version would more likely do more (the whole spaCy pipeline, YAKE
over the whole body) and make the pipeline look better than it is. Its fields go into the same INSERT.

Without --database-url a fresh database is made and dropped. The clock runs from the first file read
to the last commit; imports, the table and loading the models come before it, as in a script's head.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from common import database, exit_on_sigterm
from datasketch import MinHash, MinHashLSH

from services.enricher.enrich import DEFAULT_MODEL, Enricher
from shared.records import EnrichInput

NUM_PERM = 128
THRESHOLD = 0.8
SHINGLE_WORDS = 5
CREDIT_MAX_CHARS = 40
HEADER = re.compile(r"date (\d{4}-\d{2}-\d{2}) (.*)")
PUNCTUATION = re.compile(r"[^\w\s]")
TABLE = """CREATE TABLE baseline_articles (
    id bigserial PRIMARY KEY, path text NOT NULL, title text, published_on date, content_hash text NOT NULL,
    body text NOT NULL, near text[], language text, entities jsonb, countries text[], keywords text[],
    summary text, tone real, word_count integer)"""
INSERT = ("INSERT INTO baseline_articles (path, title, published_on, content_hash, body, near, language, entities, "
          "countries, keywords, summary, tone, word_count) "
          "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
NO_ENRICHMENT = (None, None, None, None, None, None, None)


@dataclass(frozen=True)
class Parsed:
    date: str | None
    title: str | None
    paragraphs: list[str]


def decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def simple_parse(data: bytes) -> Parsed | None:
    lines = [line.strip() for line in decode(data).splitlines() if line.strip()]
    if not lines:
        return None
    date = title = None
    if header := HEADER.fullmatch(lines[0]):
        date, title = header.groups()
        lines = lines[1:]
    if len(lines) > 1 and len(lines[-1]) <= CREDIT_MAX_CHARS and lines[-1] == lines[-1].lower():
        lines = lines[:-1]
    return Parsed(date, title, lines) if lines else None


def body_key(paragraphs: list[str]) -> str:
    return hashlib.sha256(" ".join(" ".join(paragraphs).split()).casefold().encode("utf-8")).hexdigest()


def minhash(body: str) -> MinHash:
    words = PUNCTUATION.sub("", body.lower()).split()
    shingles = {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}
    sketch = MinHash(num_perm=NUM_PERM)
    sketch.update_batch([s.encode("utf-8") for s in shingles])
    return sketch


def enrichment_fields(enricher: Enricher, number: int, title: str, body: str) -> tuple[Any, ...]:
    e = enricher.enrich([EnrichInput(article_id=number, title=title, body=body)])[0]
    entities = json.dumps([m.model_dump(mode="json") for m in e.entities])
    return e.language, entities, e.countries, e.keywords, e.summary, e.tone, e.word_count


def process_cpu_s(process: psutil.Process) -> float:
    t = process.cpu_times()
    return t.user + t.system


def run(files: list[Path], url: str, enricher: Enricher | None = None) -> dict[str, Any]:
    """The script's loop over `files`; returns its figures (files/s by the clock described above)."""
    seen: set[str] = set()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    counts = {"stored": 0, "duplicate": 0, "rejected": 0}
    near_found = 0
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS baseline_articles")
        conn.execute(TABLE)
        conn.commit()
        backend, me = psutil.Process(conn.info.backend_pid), psutil.Process(os.getpid())
        cpu_before = process_cpu_s(me), process_cpu_s(backend)
        start = time.perf_counter()
        for path in files:
            parsed = simple_parse(path.read_bytes())
            if parsed is None:
                counts["rejected"] += 1
                continue
            key = body_key(parsed.paragraphs)
            if key in seen:
                counts["duplicate"] += 1
                continue
            seen.add(key)
            body = "\n".join(parsed.paragraphs)
            sketch = minhash(body)
            near = lsh.query(sketch)
            lsh.insert(key, sketch)
            near_found += bool(near)
            fields = enrichment_fields(enricher, len(seen), parsed.title or "", body) if enricher else NO_ENRICHMENT
            conn.execute(INSERT, (str(path), parsed.title, parsed.date, key, body, near, *fields))
            conn.commit()
            counts["stored"] += 1
        elapsed_s = time.perf_counter() - start
        cpu_s = {"script": process_cpu_s(me) - cpu_before[0],
                 "postgres_backend": process_cpu_s(backend) - cpu_before[1]}
    return {"files": len(files), "elapsed_s": round(elapsed_s, 3), "files_per_s": round(len(files) / elapsed_s, 2),
            "counts": counts, "near_found": near_found, "cpu_s": {k: round(v, 3) for k, v in cpu_s.items()}}


def run_script(script: str, folder: Path, url: str) -> dict[str, Any]:
    load_start = time.perf_counter()
    enricher = Enricher(DEFAULT_MODEL) if script == "enrichment" else None
    load_s = time.perf_counter() - load_start
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise SystemExit(f"no *.txt files in {folder}")
    return {"script": script, "load_s": round(load_s, 2)} | run(files, url, enricher)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", choices=["datasketch", "enrichment"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--database-url", help="an existing database to use (default: a fresh one, dropped after)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exit_on_sigterm()
    if args.database_url:
        result = run_script(args.script, args.folder, args.database_url)
    else:
        with database(f"newsflow_baseline_{os.getpid()}") as url:
            result = run_script(args.script, args.folder, url)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['script']}: {result['files']} files in {result['elapsed_s']:.2f} s = "
              f"{result['files_per_s']:.1f} files/s {result['counts']}, near-duplicates found for "
              f"{result['near_found']}, CPU s {result['cpu_s']}")


if __name__ == "__main__":
    main()
