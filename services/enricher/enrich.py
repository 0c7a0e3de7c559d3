"""SPEC section 5: language, entities, countries, keywords, summary, tone and length of articles, in batches."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import spacy
import yake
from lingua import Language, LanguageDetectorBuilder
from spacy.pipeline import Sentencizer
from spacy.tokens import Doc
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from services.enricher.entities import entity_countries, extract_entities
from services.enricher.text import lead_text, reading_time_min, split_sentences, summary, word_count
from shared.records import EnrichInput, Enrichment
from shared.settings import ENRICHMENT_VERSION, EnricherSettings

DEFAULT_MODEL = EnricherSettings().model  # defaults stated once, in the settings
# The small English model's NER has its own tok2vec: nothing else in the pipeline is needed for entities.
NER_EXCLUDE = ("tagger", "parser", "attribute_ruler", "lemmatizer")
# The body is one paragraph a line (blank lines between): a paragraph end is a sentence end too,
# so a dateline or a heading without a full stop does not run into the next sentence.
_PARAGRAPH_BREAKS = ["\n", "\n\n", "\n\n\n"]

# Common news languages. Restricting lingua to these makes it faster and smaller; a language outside
# the list is reported as its nearest neighbour in it (Catalan as Spanish, say).
LANGUAGES = (
    Language.ENGLISH, Language.FRENCH, Language.GERMAN, Language.SPANISH, Language.ITALIAN,
    Language.PORTUGUESE, Language.DUTCH, Language.SWEDISH, Language.DANISH, Language.BOKMAL,
    Language.POLISH, Language.CZECH, Language.ROMANIAN, Language.GREEK, Language.RUSSIAN,
    Language.UKRAINIAN, Language.TURKISH, Language.ARABIC, Language.HEBREW, Language.HINDI,
    Language.INDONESIAN, Language.CHINESE, Language.JAPANESE, Language.KOREAN,
)  # fmt: skip
# Detection reads the title and this many characters of the body: a prefix is as telling as the whole
# article and keeps detection time flat on long ones.
DETECT_CHARS = 1000
# Under this many words lingua's guess is noise ("Hello" comes out Norwegian): the language is left open.
MIN_DETECT_WORDS = 3
# ISO 639-1 code to the name of yake's stopword list. Left out: languages without a list (he, ko) and
# languages written without spaces (zh, ja), where yake's word splitter would make whole clauses "keywords".
YAKE_LANGUAGES = {
    "en": "en", "fr": "fr", "de": "de", "es": "es", "it": "it", "pt": "pt", "nl": "nl", "sv": "sv", "da": "da",
    "nb": "no", "pl": "pl", "cs": "cz", "ro": "ro", "el": "el", "ru": "ru", "uk": "uk", "tr": "tr", "ar": "ar",
    "hi": "hi", "id": "id",
}  # fmt: skip
KEYWORDS_TOP = 10
# yake ranks overlapping n-grams of one phrase side by side ("Japan defense chiefs", "defense chiefs
# affirm", "chiefs affirm security"): it is asked for more and only phrases sharing no word are kept.
KEYWORD_CANDIDATES = 30
KEYWORDS_MAX_NGRAM = 3
# yake is pure Python and costs about half as much per word as spaCy's NER (profiled: graph and feature
# building, ~0.075 ms a word plus ~3 ms an article). Over the wikinews corpus, against ~45 s of NER: whole
# bodies 20 s, title + 100 words 2.8 s, title + 60 words 1.9 s. The title and lead carry a news article's
# topic (inverted pyramid) and the keywords of 60 and 100 words hardly differ, so it reads those.
KEYWORD_LEAD_WORDS = 60
# NER's peak memory grows with the characters of an nlp.pipe call, about 4 KB a character (measured with
# this model: +410 MB for 100k characters, whether one document or 20 of 5k). Drops may be 2 MiB, so a
# body is read up to NER_MAX_CHARS (longer than any real article: the longest wikinews one is ~103k) and
# a batch whose bodies add up to more than NER_BATCH_MAX_CHARS is split over several nlp.pipe calls.
# A batch of ordinary news (20 x ~5k characters) is still one call.
NER_MAX_CHARS = 200_000
NER_BATCH_MAX_CHARS = 100_000
# yake ranks on statistics alone, so a weekday or month of a dateline comes out as a "keyword".
_DATE_WORDS = frozenset({
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
    "march", "april", "may", "june", "july", "august", "september", "october", "november", "december",
    "today", "yesterday", "tomorrow",
})  # fmt: skip


class Enricher:
    """The models, loaded once per process; `enrich` runs them over a batch of articles."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = EnricherSettings().batch_size) -> None:
        self.batch_size = batch_size
        self.nlp = spacy.load(model, exclude=list(NER_EXCLUDE))
        punct_chars = [*Sentencizer.default_punct_chars, *_PARAGRAPH_BREAKS]
        self.nlp.add_pipe("sentencizer", config={"punct_chars": punct_chars})
        # Low accuracy mode loads trigram models only: a few tens of MB per process for these languages
        # instead of ~470 MB (measured) with the high accuracy models preloaded, and nearly as accurate on
        # texts over ~120 characters, which title plus lead almost always are (lingua's README).
        self.detector = (
            LanguageDetectorBuilder.from_languages(*LANGUAGES)
            .with_low_accuracy_mode()
            .with_preloaded_language_models()
            .build()
        )
        self.sentiment = SentimentIntensityAnalyzer()
        self._extractors: dict[str, yake.KeywordExtractor] = {}
        # Seconds spent per component since the process started: the benchmark's breakdown.
        self.timings_s: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def _timed(self, component: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[component] += time.perf_counter() - start

    def enrich(self, items: Sequence[EnrichInput]) -> list[Enrichment]:
        """Enrichments of a batch of articles, in order; the English bodies go through `nlp.pipe` together."""
        with self._timed("language"):
            languages = [self.detect_language(item.title, item.body) for item in items]
        english = [i for i, language in enumerate(languages) if language == "en"]
        # Strings spaCy interns for a batch's docs are freed when the zone ends: a long-lived enricher's
        # memory stays flat (the docs must not outlive it, so everything that reads them happens inside).
        with self.nlp.memory_zone():
            with self._timed("spacy (ner + sentencizer)"):
                texts = [ner_text(items[i].body) for i in english]
                groups = ner_batches(texts, NER_BATCH_MAX_CHARS)
                parsed = [doc for group in groups for doc in self.nlp.pipe(group, batch_size=self.batch_size)]
                docs = dict(zip(english, parsed, strict=True))
            return [
                self._enrichment(item, language, docs.get(i))
                for i, (item, language) in enumerate(zip(items, languages, strict=True))
            ]

    def detect_language(self, title: str, body: str) -> str | None:
        """ISO 639-1 code of the article's language, None when the text says too little."""
        text = f"{title}\n{body[:DETECT_CHARS]}"
        if len(text.split()) < MIN_DETECT_WORDS:
            return None
        language = self.detector.detect_language_of(text)
        return language.iso_code_639_1.name.lower() if language is not None else None

    def keywords(self, title: str, body: str, language: str | None) -> list[str]:
        """Up to KEYWORDS_TOP key phrases of the title and lead, best first; [] where yake has no language."""
        lan = YAKE_LANGUAGES.get(language or "")
        if lan is None:
            return []
        if lan not in self._extractors:
            self._extractors[lan] = yake.KeywordExtractor(lan=lan, n=KEYWORDS_MAX_NGRAM, top=KEYWORD_CANDIDATES)
        found = self._extractors[lan].extract_keywords(lead_text(title, body, KEYWORD_LEAD_WORDS))
        return distinct_keywords([phrase for phrase, _score in found], KEYWORDS_TOP)

    def tone(self, sentences: Sequence[str]) -> float | None:
        """Mean VADER compound score of the sentences, -1..1; None when there is no sentence."""
        scores = [self.sentiment.polarity_scores(s)["compound"] for s in sentences if s.strip()]
        if not scores:
            return None
        return round(max(-1.0, min(1.0, sum(scores) / len(scores))), 4)

    def _enrichment(self, item: EnrichInput, language: str | None, doc: Doc | None) -> Enrichment:
        if doc is not None:
            with self._timed("entities"):
                entities = extract_entities(doc)
                countries = entity_countries(entities)
            sentences = [s.text.strip() for s in doc.sents]
            with self._timed("tone"):
                tone = self.tone(sentences)
        else:
            # No English model for the rest: an English NER on French text finds nonsense, and VADER's
            # lexicon is English.
            entities, countries, tone = [], [], None
            with self._timed("sentences (regex)"):
                sentences = split_sentences(item.body)
        with self._timed("keywords"):
            keywords = self.keywords(item.title, item.body, language)
        with self._timed("summary + counts"):
            words = word_count(item.body)
            lead = summary(sentences, item.dateline)
        return Enrichment(
            article_id=item.article_id,
            version=ENRICHMENT_VERSION,
            language=language,
            entities=entities,
            countries=countries,
            keywords=keywords,
            summary=lead,
            tone=tone,
            word_count=words,
            reading_time_min=reading_time_min(words),
        )


def distinct_keywords(phrases: Sequence[str], top: int) -> list[str]:
    """The first `top` phrases that share no word with a better one and are not only dates or numbers."""
    kept: list[str] = []
    used: set[str] = set()
    for phrase in phrases:
        words = phrase.lower().split()
        if used.intersection(words) or all(w in _DATE_WORDS or w.isdigit() for w in words):
            continue
        kept.append(phrase)
        used.update(words)
        if len(kept) == top:
            break
    return kept


def ner_text(body: str) -> str:
    """What spaCy reads of a body: all of it, up to NER_MAX_CHARS cut at a blank."""
    if len(body) <= NER_MAX_CHARS:
        return body
    cut = body.rfind(" ", 0, NER_MAX_CHARS)
    return body[: cut if cut > 0 else NER_MAX_CHARS]


def ner_batches(texts: Sequence[str], max_chars: int) -> list[list[str]]:
    """Consecutive groups of texts of at most `max_chars` characters in all (a longer text alone)."""
    groups: list[list[str]] = []
    size = 0
    for text in texts:
        if not groups or size + len(text) > max_chars:
            groups.append([])
            size = 0
        groups[-1].append(text)
        size += len(text)
    return groups
