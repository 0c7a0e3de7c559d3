"""The benchmark corpus: thousands of realistic drops made from the 295 wikinews files, in known proportions.

Run: python tests/bench/corpus.py [--drops 3200] [--seed 2024] [--out DIR]   (prints the composition)

- Distinct texts: each wikinews file as it is, then edited versions of it as a news desk makes them: the
  dateline and lead kept, later paragraphs cut (35-90 % kept), sometimes two swapped, sometimes a
  paragraph of another article added. A version is kept only if its word 5-shingle Jaccard similarity
  (the pipeline's own measure, shared.similarity) with every text sharing a paragraph with it is below
  DISTINCT_MAX_JACCARD, so distinct texts are not near-duplicates of one another.
- Exact copies (EXACT_SHARE): a distinct text again with the same body but a new title, another credit
  line, or another encoding (UTF-8 with BOM, CRLF line ends, UTF-16, cp1252).
- Near copies (NEAR_SHARE): a distinct text with one to three words changed, at least NEAR_MIN_JACCARD
  similar to it (so both are stored and linked as near-duplicates).

File names are random hex, so copies and originals are interleaved. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.similarity import jaccard, shingle_hashes

WIKINEWS = Path(__file__).resolve().parents[1] / "data" / "wikinews"
DEFAULT_DROPS = 3200
DEFAULT_SEED = 2024
EXACT_SHARE = 0.05
NEAR_SHARE = 0.03
DISTINCT_MAX_JACCARD = 0.6
NEAR_MIN_JACCARD = 0.85
KEEP_SHARE = (0.35, 0.9)  # share of the paragraphs after the lead that a version keeps
SWAP_CHANCE = 0.3
ADD_CHANCE = 0.4
ATTEMPTS_PER_TURN = 25  # candidate versions tried for a file in one round-robin turn
NEAR_MIN_WORDS = 120
CREDITS = ("reuters", "associated press", "afp", "bbc news", "bloomberg news")
EXACT_KINDS = ("new title", "other credit", "utf-8 bom", "crlf", "utf-16", "cp1252")


@dataclass(frozen=True)
class Source:
    date: str
    title: str
    credit: str
    paragraphs: tuple[str, ...]
    fixed: int  # leading paragraphs every version keeps: the dateline (if any) and the lead


@dataclass(frozen=True)
class Text:
    source: int
    paragraphs: tuple[str, ...]

    @property
    def body(self) -> str:
        return "\n".join(self.paragraphs)


@dataclass
class Corpus:
    folder: Path
    sources: int
    distinct: int = 0
    exact: int = 0
    near: int = 0
    exact_kinds: Counter[str] = field(default_factory=Counter)
    words: int = 0
    files: list[Path] = field(default_factory=list)

    @property
    def drops(self) -> int:
        return len(self.files)

    def composition(self) -> str:
        return (f"{self.drops:,} drops: {self.distinct:,} distinct texts, {self.exact:,} exact copies, "
                f"{self.near:,} near copies")

    def detail(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.exact_kinds.items()))
        return (f"(versions of {self.sources} wikinews files, {self.words / max(1, self.drops):.0f} words a drop; "
                f"distinct texts pairwise Jaccard < {DISTINCT_MAX_JACCARD}; near copies 1-3 words changed, "
                f"Jaccard >= {NEAR_MIN_JACCARD} with their original; exact copies: {kinds})")

    def expected(self) -> dict[str, int]:
        """What a correct run ends with: articles stored, drops found duplicate, near-duplicate pairs."""
        return {"stored": self.distinct + self.near, "duplicate": self.exact, "near_pairs": self.near}


def load_sources(folder: Path) -> list[Source]:
    sources = []
    for path in sorted(folder.glob("*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        _, date, title = lines[0].split(" ", 2)
        paragraphs = tuple(lines[1:-1])
        lead = next((i for i, p in enumerate(paragraphs) if len(p.split()) > 8), 0)
        sources.append(Source(date, title, lines[-1], paragraphs, min(lead + 1, len(paragraphs))))
    return sources


def edited_version(rng: random.Random, sources: list[Source], index: int) -> Text:
    """Dateline and lead kept, later paragraphs cut, maybe two swapped, maybe one of another article added."""
    source = sources[index]
    keep = rng.uniform(*KEEP_SHARE)
    kept = [p for p in source.paragraphs[source.fixed:] if rng.random() < keep]
    if len(kept) >= 2 and rng.random() < SWAP_CHANCE:
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    paragraphs = list(source.paragraphs[:source.fixed]) + kept
    if not kept or rng.random() < ADD_CHANCE:
        other = sources[rng.choice([i for i in range(len(sources)) if i != index])]
        extra = [p for p in other.paragraphs[other.fixed:] if len(p.split()) >= 15] or list(other.paragraphs)
        paragraphs.insert(rng.randint(source.fixed, len(paragraphs)), rng.choice(extra))
    return Text(index, tuple(paragraphs))


class DistinctTexts:
    """Texts accepted so far, indexed by paragraph so a candidate is compared with every text it overlaps."""

    def __init__(self) -> None:
        self.texts: list[Text] = []
        self.shingles: list[np.ndarray] = []
        self.by_paragraph: dict[str, list[int]] = {}

    def add_if_distinct(self, text: Text) -> bool:
        hashes = shingle_hashes(text.body)
        related = {i for p in text.paragraphs for i in self.by_paragraph.get(p, ())}
        if hashes.size == 0 or any(jaccard(hashes, self.shingles[i]) >= DISTINCT_MAX_JACCARD for i in related):
            return False
        for p in set(text.paragraphs):
            self.by_paragraph.setdefault(p, []).append(len(self.texts))
        self.texts.append(text)
        self.shingles.append(hashes)
        return True


def distinct_texts(rng: random.Random, sources: list[Source], count: int) -> DistinctTexts:
    """Every source as it is, then edited versions, one per source per round, until `count` texts."""
    found = DistinctTexts()
    for index, source in enumerate(sources):
        if len(found.texts) < count:
            found.add_if_distinct(Text(index, source.paragraphs))
    open_sources = list(range(len(sources)))
    while len(found.texts) < count and open_sources:
        rng.shuffle(open_sources)
        for index in list(open_sources):
            if len(found.texts) == count:
                break
            if not any(found.add_if_distinct(edited_version(rng, sources, index)) for _ in range(ATTEMPTS_PER_TURN)):
                open_sources.remove(index)  # this file has given all the versions it can
    if len(found.texts) < count:
        raise SystemExit(f"only {len(found.texts)} distinct texts can be made from {len(sources)} files; "
                         "ask for fewer drops")
    return found


def near_copy(rng: random.Random, text: Text, hashes: np.ndarray) -> Text | None:
    """The text with one to three words replaced by other words of it; None if that is not similar enough."""
    paragraphs = list(text.paragraphs)
    vocabulary = sorted({w for p in paragraphs for w in p.split() if w.isalpha() and len(w) > 3})
    candidates = [i for i, p in enumerate(paragraphs) if len(p.split()) >= 10]
    if len(vocabulary) < 2 or not candidates:
        return None
    for _ in range(rng.randint(1, 3)):
        i = rng.choice(candidates)
        words = paragraphs[i].split(" ")
        positions = [k for k, w in enumerate(words) if w.isalpha() and len(w) > 3]
        if positions:
            k = rng.choice(positions)
            words[k] = rng.choice([w for w in vocabulary if w.lower() != words[k].lower()])
            paragraphs[i] = " ".join(words)
    copy = Text(text.source, tuple(paragraphs))
    similarity = jaccard(shingle_hashes(copy.body), hashes)
    return copy if NEAR_MIN_JACCARD <= similarity < 1.0 else None


def render(source: Source, text: Text, *, kind: str = "") -> bytes:
    """The drop file of a text; for an exact copy, `kind` says what differs (never the body)."""
    title = f"UPDATE: {source.title}" if kind == "new title" else source.title
    credit = source.credit
    if kind == "other credit":
        credit = next(c for c in CREDITS if c != source.credit)
    content = "\n".join([f"date {source.date} {title}", *text.paragraphs, credit]) + "\n"
    if kind == "crlf":
        return content.replace("\n", "\r\n").encode("utf-8")
    encoding = {"utf-8 bom": "utf-8-sig", "utf-16": "utf-16", "cp1252": "cp1252"}.get(kind, "utf-8")
    return content.encode(encoding)


def exact_kind(rng: random.Random, source: Source, text: Text) -> str:
    kind = rng.choice(EXACT_KINDS)
    if kind == "cp1252":  # only where the bytes really differ from UTF-8 and every character fits
        content = "\n".join([source.title, *text.paragraphs])
        try:
            content.encode("cp1252")
        except UnicodeEncodeError:
            return "utf-8 bom"
        return kind if not content.isascii() else "utf-8 bom"
    return kind


def build_corpus(folder: Path, drops: int = DEFAULT_DROPS, *, seed: int = DEFAULT_SEED,
                 source_folder: Path = WIKINEWS) -> Corpus:
    """Write the corpus's drop files into `folder` (which must exist) and say what it holds."""
    rng = random.Random(seed)
    sources = load_sources(source_folder)
    corpus = Corpus(folder, len(sources), exact=round(drops * EXACT_SHARE), near=round(drops * NEAR_SHARE))
    corpus.distinct = drops - corpus.exact - corpus.near
    found = distinct_texts(rng, sources, corpus.distinct)
    outputs: list[bytes] = [render(sources[t.source], t) for t in found.texts]
    bodies = [t.body for t in found.texts]
    for i in rng.sample(range(len(found.texts)), corpus.exact):
        text = found.texts[i]
        kind = exact_kind(rng, sources[text.source], text)
        corpus.exact_kinds[kind] += 1
        outputs.append(render(sources[text.source], text, kind=kind))
        bodies.append(text.body)
    origins = [i for i in rng.sample(range(len(found.texts)), len(found.texts))
               if len(found.texts[i].body.split()) >= NEAR_MIN_WORDS]
    made = 0
    for i in origins:
        if made == corpus.near:
            break
        if copy := near_copy(rng, found.texts[i], found.shingles[i]):
            outputs.append(render(sources[copy.source], copy))
            bodies.append(copy.body)
            made += 1
    if made < corpus.near:
        raise SystemExit(f"only {made} near copies could be made; ask for fewer drops")
    names: dict[str, bytes] = {}  # random names: in sorted order, copies and originals are interleaved
    for data in outputs:
        while (name := f"{rng.getrandbits(64):016x}.txt") in names:
            pass
        names[name] = data
    for name, data in names.items():
        (folder / name).write_bytes(data)
    corpus.files = sorted(folder.glob("*.txt"))
    corpus.words = sum(len(b.split()) for b in bodies)
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=DEFAULT_DROPS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, help="write the drops here (default: a temporary folder, removed)")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="newsflow-corpus-") as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        corpus = build_corpus(folder, args.drops, seed=args.seed)
        print(corpus.composition())
        print(corpus.detail())
        print(f"built in {time.perf_counter() - start:.1f} s" + (f" in {folder}" if args.out else ""))


if __name__ == "__main__":
    main()
