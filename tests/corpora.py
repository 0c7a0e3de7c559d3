"""Articles for the consumer tests and the API bench, stored through storage's own code (store_outcomes and
store_enrichments, as the storage service runs them), with drops registered in the ledger first."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from services.storage.enrichments import store_enrichments
from services.storage.store import store_outcomes
from shared.db import transaction
from shared.records import DropOutcome, Enrichment, EntityMention, ParsedArticle
from shared.similarity import sketch
from shared.text import content_hash

WORDS = (
    "election", "vote", "minister", "parliament", "market", "shares", "bank", "rates", "storm", "flood", "rescue",
    "court", "judge", "trial", "football", "match", "goal", "season", "team", "coach", "vaccine", "hospital",
    "doctors", "climate", "summit", "treaty", "border", "troops", "peace", "talks", "oil", "prices", "energy",
    "company", "profits", "workers", "strike", "school", "teachers", "students", "city", "mayor", "police", "fire",
    "bridge", "train", "airport", "flight", "museum", "festival", "film", "music", "album", "record", "space",
    "rocket",
)
SOURCES = ("Reuters", "Associated Press", "BBC News", "Bloomberg News")
COUNTRIES = ("US", "FR", "DE", "JP", "GB")
# Washington is two entities (a person, a place): a name of several types, which the listing filters another way.
ENTITIES = (("person", "Ada Lovelace"), ("person", "Alan Turing"), ("organization", "United Nations"),
            ("place", "Paris"), ("place", "Tokyo"), ("person", "Washington"), ("place", "Washington"))
THRESHOLD = 0.8


@dataclass(frozen=True)
class Spec:
    """One article to store, and what its enrichment says (None: not enriched)."""

    title: str
    body: str
    published_on: date | None
    source: str | None
    language: str | None = None
    countries: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    entities: tuple[tuple[str, str], ...] = ()
    enriched: bool = True
    paragraphs: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paragraphs", [p for p in self.body.split("\n\n") if p])


def random_spec(rng: random.Random, dates: Sequence[date | None], words: int = 40) -> Spec:
    body = "\n\n".join(" ".join(rng.choices(WORDS, k=words // 4)).capitalize() + "." for _ in range(4))
    return Spec(
        title=" ".join(rng.choices(WORDS, k=5)).capitalize(), body=body, published_on=rng.choice(dates),
        source=rng.choice((*SOURCES, None)), language=rng.choice(("en", "en", "fr", None)),
        countries=tuple(sorted(set(rng.sample(COUNTRIES, rng.randint(0, 2))))),
        keywords=tuple(sorted(set(rng.sample(WORDS[:12], rng.randint(0, 3))))),
        entities=tuple(sorted(set(rng.sample(ENTITIES, rng.randint(0, 2))))), enriched=rng.random() < 0.8)


def register_drops(session: Session, specs: Sequence[Spec], tag: str) -> list[int]:
    """A queued drop per spec, waiting for storage (as the worker leaves it)."""
    shas = [hashlib.sha256(f"{tag}:{i}:{s.body}".encode()).hexdigest() for i, s in enumerate(specs)]
    return list(session.execute(text(
        "INSERT INTO drops (path, sha256, size, host, status, stage) "
        "SELECT p, s, 1, 'test', 'queued', 'store' FROM unnest(CAST(:paths AS text[]), CAST(:shas AS text[])) "
        "WITH ORDINALITY AS u(p, s, n) ORDER BY n RETURNING id"),
        {"paths": [f"/drops/{tag}/{i}.txt" for i in range(len(specs))], "shas": shas}).scalars())


def outcome(drop_id: int, spec: Spec) -> DropOutcome:
    shingles, minhash = sketch(spec.body)
    article = ParsedArticle(title=spec.title, published_on=spec.published_on, source=spec.source,
                            source_raw=spec.source.lower() if spec.source else None, paragraphs=spec.paragraphs,
                            encoding="utf-8", content_hash=content_hash(spec.paragraphs))
    return DropOutcome(drop_id=drop_id, article=article, shingles=base64.b64encode(shingles).decode(),
                       minhash=base64.b64encode(minhash).decode(), parsed_by="test")


def enrichment(article_id: int, spec: Spec) -> Enrichment:
    return Enrichment(article_id=article_id, version="test", language=spec.language,
                      entities=[EntityMention(text=name, type=kind, count=1) for kind, name in spec.entities],
                      countries=list(spec.countries), keywords=list(spec.keywords), summary=spec.body[:80],
                      tone=0.0, word_count=len(spec.body.split()), reading_time_min=1.0)


def store(session: Session, specs: Sequence[Spec], tag: str) -> list[int]:
    """Store the specs in this transaction as storage does; returns each spec's article id."""
    drop_ids = register_drops(session, specs, tag)
    store_outcomes(session, [outcome(d, s) for d, s in zip(drop_ids, specs, strict=True)], threshold=THRESHOLD,
                   max_unfinished=0)
    rows = dict(session.execute(text("SELECT id, article_id FROM drops WHERE id = ANY(:ids)"),
                                {"ids": drop_ids}).all())
    return [rows[d] for d in drop_ids]


def enrich(session: Session, specs: Sequence[Spec], article_ids: Sequence[int]) -> None:
    todo = [enrichment(a, s) for a, s in zip(article_ids, specs, strict=True) if s.enriched]
    if todo:
        store_enrichments(session, todo)


def store_and_enrich(sessions: sessionmaker[Session], specs: Sequence[Spec], tag: str) -> list[int]:
    """Two transactions, as in the pipeline: storage, then the enrichment's storage."""
    with transaction(sessions) as session:
        ids = store(session, specs, tag)
    with transaction(sessions) as session:
        enrich(session, specs, ids)
    return ids
