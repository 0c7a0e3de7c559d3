"""Enrichment stage throughput in one process beside raw spaCy NER on the same texts (SPEC section 9: ≥ 0.85×).

Run: python tests/bench/bench_enrich.py [--rounds 3] [--batch 20] [--profile]

The wikinews drops are parsed with parse_drop and given to `Enricher.enrich` in batches of --batch, as a
worker task gets them. The baseline is one `nlp.pipe` call over the same texts (the bodies the Enricher
feeds spaCy) with the same model, the same excluded components and the same batch_size, without the
sentencizer or anything else. A second baseline calls `nlp.pipe` once per task batch, as the Enricher
does, so its ratio isolates what enrichment adds to NER. The sides take turns, round by round, so all
see the same machine; the best and median rounds are reported. --profile prints cProfile's top
functions for one more Enricher pass.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import spacy

from services.enricher.enrich import DEFAULT_MODEL, NER_EXCLUDE, Enricher, ner_text
from services.worker.parsing import parse_drop
from shared.records import EnrichInput, ParsedArticle

WIKINEWS = Path(__file__).resolve().parents[1] / "data" / "wikinews"
ENRICHER = "Enricher.enrich"
RAW = "raw nlp.pipe, one call"
RAW_PER_TASK = "raw nlp.pipe per task batch"
CLOCKS = ("wall", "cpu")
Times = dict[str, list[float]]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident memory now, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_items() -> list[EnrichInput]:
    items = []
    for number, path in enumerate(sorted(WIKINEWS.glob("*.txt"))):
        parsed = parse_drop(path.read_bytes())
        if isinstance(parsed, ParsedArticle):
            items.append(EnrichInput(article_id=number, title=parsed.title, body=parsed.body))
    return items


def batches(items: Sequence[EnrichInput], size: int) -> list[Sequence[EnrichInput]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def rates(seconds: list[float], articles: int) -> tuple[float, float]:
    """Best and median articles per second."""
    per_s = [articles / s for s in seconds]
    return max(per_s), statistics.median(per_s)


def print_throughput(seconds: dict[str, Times], articles: int) -> None:
    print(f"\nThroughput, one process ({articles} articles a pass), by wall clock and by this process's CPU time:")
    found = {name: {clock: rates(times[clock], articles) for clock in CLOCKS} for name, times in seconds.items()}
    for name, by_clock in found.items():
        figures = " | ".join(f"{c} best {by_clock[c][0]:5.2f} median {by_clock[c][1]:5.2f}" for c in CLOCKS)
        print(f"  {name:<28} {figures} articles/s")
    for baseline in (RAW, RAW_PER_TASK):
        figures = " | ".join(
            f"{clock} best {found[ENRICHER][clock][0] / found[baseline][clock][0]:.3f} "
            f"median {found[ENRICHER][clock][1] / found[baseline][clock][1]:.3f}"
            for clock in CLOCKS
        )
        print(f"  ratio Enricher / {baseline:<27} {figures}")
    print(f"  (target >= 0.85 against {RAW}; against {RAW_PER_TASK}, spaCy called as the Enricher calls it,")
    print("   the ratio is what enrichment adds to NER alone. CPU time is less sensitive to other processes here.)")


def print_breakdown(timings_s: Mapping[str, float], total_s: float, rounds: int) -> None:
    print(f"\nEnricher wall time per component (mean of {rounds} rounds, seconds per pass over the corpus):")
    for component, seconds in sorted(timings_s.items(), key=lambda item: -item[1]):
        print(f"  {component:<28} {seconds / rounds:7.2f} s  {100 * seconds / total_s:5.1f} %")
    rest = total_s - sum(timings_s.values())
    print(f"  {'rest (records, batching)':<28} {rest / rounds:7.2f} s  {100 * rest / total_s:5.1f} %")


def profile(enricher: Enricher, groups: list[Sequence[EnrichInput]]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for group in groups:
        enricher.enrich(group)
    profiler.disable()
    print("\ncProfile, one Enricher pass, top 25 by internal time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def measure(sides: dict[str, Callable[[], object]], rounds: int) -> dict[str, Times]:
    """Wall and CPU seconds per pass of each side, round by round; the first side starts round 1."""
    seconds: dict[str, Times] = {name: {clock: [] for clock in CLOCKS} for name in sides}
    names = list(sides)
    for number in range(rounds):
        # Rotating who goes first keeps a drift in machine load from favouring one side. The Enricher
        # starts round 1, so the peak memory printed after it is its own, not the baselines'.
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = timed(sides[name])
            seconds[name]["wall"].append(wall)
            seconds[name]["cpu"].append(cpu)
            if number == 0 and name == names[0]:
                print(f"peak RSS after the first {name} pass (no baseline pass yet): {peak_rss_mb():7.1f} MB")
        passes = ", ".join(f"{name} {t['wall'][-1]:6.2f} s ({t['cpu'][-1]:6.2f} s CPU)" for name, t in seconds.items())
        print(f"  round {number + 1}: {passes}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20, help="articles per enrich() call, as per task")
    parser.add_argument("--batch-size", type=int, default=32, help="nlp.pipe batch_size, every side")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    print(f"peak RSS after imports: {peak_rss_mb():7.1f} MB")
    load_start = time.perf_counter()
    enricher = Enricher(DEFAULT_MODEL, batch_size=args.batch_size)
    print(f"peak RSS after loading the Enricher: {peak_rss_mb():7.1f} MB ({time.perf_counter() - load_start:.1f} s)")
    nlp = spacy.load(DEFAULT_MODEL, exclude=list(NER_EXCLUDE))
    print(f"peak RSS after loading the baseline pipeline too: {peak_rss_mb():7.1f} MB  pipeline {nlp.pipe_names}")

    items = load_items()
    groups = batches(items, args.batch)
    languages = [enricher.detect_language(item.title, item.body) for item in items]
    texts = [ner_text(item.body) for item, language in zip(items, languages, strict=True) if language == "en"]
    text_groups = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    words = sum(len(item.body.split()) for item in items)
    print(f"{len(items)} wikinews articles, {words:,} words, {len(groups)} batches of {args.batch}; "
          f"languages {dict(Counter(languages))}; {len(texts)} English bodies for spaCy")

    def run_enricher() -> None:
        for group in groups:
            enricher.enrich(group)

    def run_raw() -> None:
        for _doc in nlp.pipe(texts, batch_size=args.batch_size):
            pass

    def run_raw_per_task() -> None:
        for group in text_groups:
            for _doc in nlp.pipe(group, batch_size=args.batch_size):
                pass

    # Warm-up: first calls allocate and fill caches on every side.
    for _doc in nlp.pipe(text_groups[0], batch_size=args.batch_size):
        pass
    enricher.enrich(groups[0])
    enricher.timings_s.clear()

    sides = {ENRICHER: run_enricher, RAW: run_raw, RAW_PER_TASK: run_raw_per_task}
    seconds = measure(sides, args.rounds)
    print_throughput(seconds, len(items))
    print_breakdown(enricher.timings_s, sum(seconds[ENRICHER]["wall"]), args.rounds)
    print(f"\npeak RSS after all rounds (every side): {peak_rss_mb():7.1f} MB; RSS now {current_rss_mb():7.1f} MB")
    if args.profile:
        profile(enricher, groups)


if __name__ == "__main__":
    main()
