"""Realistic near-duplicate families built from the wikinews corpus, and the brute-force truth.

Per base article: updates (a paragraph added, one removed), a correction (a few words changed),
exact copies that differ in title and credit (syndication), encoding and line ends, or
boilerplate, and an unrelated article on the same topic (it shares half the original's paragraphs).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from services.worker.parsing import parse_drop
from shared.records import ParsedArticle

WIKINEWS = Path(__file__).parent / "data" / "wikinews"
MIN_PARAGRAPHS = 8
_WORD = re.compile(r"\w+")


def shingles(text: str) -> set[str]:
    """SPEC section 4's word 5-shingles as plain strings: the reference the hashed sets are checked against."""
    words = _WORD.findall(text.casefold())
    if len(words) < 5:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + 5]) for i in range(len(words) - 4)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass(frozen=True)
class Drop:
    name: str
    data: bytes


def _compose(header_date: date, title: str, paragraphs: list[str], credit: str) -> str:
    return "\n".join([f"date {header_date.isoformat()} {title}", *paragraphs, credit]) + "\n"


def _split(path: Path) -> tuple[date, str, list[str], str]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    _, day, title = lines[0].split(" ", 2)
    return date.fromisoformat(day), title, lines[1:-1], lines[-1]


def _correct(paragraph: str, rng: random.Random) -> str:
    words = paragraph.split(" ")
    for i in rng.sample(range(len(words)), k=min(3, len(words))):
        words[i] = words[i].upper() if words[i].islower() else words[i].lower() + "s"
    return " ".join(words)


def family(base: Path, other: Path, rng: random.Random) -> list[Drop]:
    day, title, paras, credit = _split(base)
    _, _, other_paras, _ = _split(other)
    stem = base.stem
    text = _compose(day, title, paras, credit)
    fixed = list(paras)
    fixed[2] = _correct(fixed[2], rng)
    drops = [
        Drop(f"{stem}-original.txt", text.encode()),
        Drop(f"{stem}-update-added.txt", _compose(day + timedelta(days=1), title + " (updated)",
                                                  [*paras, other_paras[-1]], credit).encode()),
        Drop(f"{stem}-update-removed.txt", _compose(day + timedelta(days=1), title,
                                                    paras[:3] + paras[4:], credit).encode()),
        Drop(f"{stem}-correction.txt", _compose(day, title, fixed, credit).encode()),
        Drop(f"{stem}-syndicated.txt", _compose(day, "Wire: " + title, paras, "associated press").encode()),
        Drop(f"{stem}-syndicated-late.txt", _compose(day + timedelta(days=2), "Reprint: " + title, paras,
                                                     "reuters").encode()),
        Drop(f"{stem}-utf16-crlf.txt", text.replace("\n", "\r\n").encode("utf-16")),
        Drop(f"{stem}-boilerplate.txt", text.replace(paras[1] + "\n", paras[1] + "\nAdvertisement\n").encode()),
        # Shares half its text with the original: an LSH candidate that exact Jaccard must turn down.
        Drop(f"{stem}-same-topic.txt", _compose(day, "Background: " + title,
                                                paras[:len(paras) // 2] + other_paras[:len(other_paras) // 2],
                                                credit).encode()),
    ]
    return drops


def build_families(count: int, seed: int = 7) -> list[Drop]:
    """`count` families from the longest-enough wikinews articles; deterministic for a seed."""
    rng = random.Random(seed)
    eligible = [p for p in sorted(WIKINEWS.glob("*.txt")) if len(_split(p)[2]) >= MIN_PARAGRAPHS]
    bases = rng.sample(eligible, k=2 * count)
    return [d for base, other in zip(bases[::2], bases[1::2], strict=True) for d in family(base, other, rng)]


@dataclass(frozen=True)
class Truth:
    clusters: set[frozenset[str]]  # content hashes
    canonicals: dict[frozenset[str], str]
    metadata: dict[str, tuple[str, date | None]]  # title and date per content hash


def canonical_of(members: Iterable[ParsedArticle]) -> str:
    first = min(members, key=lambda a: (a.published_on is None, a.published_on or date.min, a.content_hash))
    return first.content_hash


def brute_force(drops: list[Drop], threshold: float) -> Truth:
    """Exact Jaccard over all pairs of distinct articles, connected components, canonicals."""
    articles: dict[str, ParsedArticle] = {}
    # An article carries the metadata of its drop with the smallest SHA-256, whatever the order.
    for drop in sorted(drops, key=lambda d: hashlib.sha256(d.data).hexdigest(), reverse=True):
        parsed = parse_drop(drop.data)
        assert isinstance(parsed, ParsedArticle), drop.name
        articles[parsed.content_hash] = parsed
    parent = {h: h for h in articles}

    def root(h: str) -> str:
        while parent[h] != h:
            parent[h] = parent[parent[h]]
            h = parent[h]
        return h

    sets = {h: shingles(a.body) for h, a in articles.items()}
    for a, b in itertools.combinations(sorted(articles), 2):
        if jaccard(sets[a], sets[b]) >= threshold:
            parent[root(a)] = root(b)
    groups: dict[str, set[str]] = {}
    for h in articles:
        groups.setdefault(root(h), set()).add(h)
    clusters = {frozenset(g) for g in groups.values()}
    metadata = {h: (a.title, a.published_on) for h, a in articles.items()}
    return Truth(clusters, {c: canonical_of(articles[h] for h in c) for c in clusters}, metadata)


def pairs(clusters: Iterable[frozenset[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for c in clusters for p in itertools.combinations(sorted(c), 2)}


def precision_recall(found: set[frozenset[str]], truth: set[frozenset[str]]) -> tuple[float, float]:
    got, want = pairs(found), pairs(truth)
    precision = len(got & want) / len(got) if got else 1.0
    recall = len(got & want) / len(want) if want else 1.0
    return precision, recall
