"""The Enricher end to end on the reference sample, other languages and degenerate bodies (real models)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from spacy.tokens import Doc

from services.enricher import enrich
from services.enricher.enrich import (
    ENRICHMENT_VERSION,
    NER_MAX_CHARS,
    Enricher,
    distinct_keywords,
    ner_batches,
    ner_text,
)
from services.worker.parsing import parse_drop
from shared.records import EnrichInput, Enrichment, ParsedArticle

SAMPLE = Path(__file__).parents[2] / "seeds" / "000_6488bdc6352e6c22.txt"
SAMPLE_FIRST_SENTENCE = (
    "Top Japanese and US military officials affirmed a commitment to their joint security pact hours after a "
    "Bloomberg News report said President Trump has privately mulled ending the longstanding treaty, which has "
    "been a pillar of regional security."
)

FRENCH = (
    "Le gouvernement français a annoncé mardi un nouveau plan d'investissement de deux milliards d'euros pour "
    "moderniser le réseau ferroviaire régional. Selon le ministre des Transports, les travaux commenceront au "
    "printemps prochain dans plusieurs régions, notamment en Bretagne et en Occitanie.\n\nLes syndicats de "
    "cheminots ont salué une décision attendue depuis longtemps, tout en réclamant davantage de recrutements. "
    "L'opposition estime cependant que ce financement reste insuffisant face au vieillissement des "
    "infrastructures et à la hausse du nombre de voyageurs."
)
GERMAN = (
    "Die Bundesregierung hat am Mittwoch ein umfangreiches Paket zur Förderung erneuerbarer Energien "
    "beschlossen. Nach Angaben des Wirtschaftsministeriums sollen in den kommenden fünf Jahren mehr als zehn "
    "Milliarden Euro in den Ausbau von Windkraft und Solaranlagen fließen. Kommunen und Stadtwerke können ab "
    "Januar Anträge stellen.\n\nUmweltverbände begrüßten die Pläne grundsätzlich, kritisierten aber, dass der "
    "Netzausbau weiterhin zu langsam vorankomme. Die Opposition im Bundestag sprach dagegen von einem teuren "
    "Wahlgeschenk ohne solide Finanzierung."
)
SPANISH = (
    "El Gobierno de España aprobó este martes una reforma que amplía las ayudas al alquiler para los jóvenes "
    "menores de treinta y cinco años. Según el Ministerio de Vivienda, más de doscientas mil personas podrán "
    "beneficiarse de la medida durante el próximo año.\n\nLas asociaciones de inquilinos celebraron el anuncio, "
    "aunque advirtieron de que los precios siguen subiendo en las grandes ciudades. La oposición criticó que la "
    "reforma llegue tarde y pidió un plan para construir más vivienda pública en Madrid y Barcelona."
)
FOREIGN = [
    ("fr", "Le gouvernement investit deux milliards dans le rail", FRENCH),
    ("de", "Bundesregierung beschließt Milliardenpaket für erneuerbare Energien", GERMAN),
    ("es", "El Gobierno amplía las ayudas al alquiler para jóvenes", SPANISH),
]


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher()


@pytest.fixture(scope="module")
def sample() -> ParsedArticle:
    parsed = parse_drop(SAMPLE.read_bytes())
    assert isinstance(parsed, ParsedArticle)
    return parsed


@pytest.fixture(scope="module")
def enriched(enricher: Enricher, sample: ParsedArticle) -> Enrichment:
    [result] = enricher.enrich([EnrichInput(article_id=7, title=sample.title, body=sample.body)])
    return result


def counts(result: Enrichment, entity_type: str) -> dict[str, int]:
    return {e.text: e.count for e in result.entities if e.type == entity_type}


def test_sample_language_version_and_id(enriched: Enrichment) -> None:
    assert (enriched.language, enriched.version, enriched.article_id) == ("en", ENRICHMENT_VERSION, 7)


def test_sample_people_merge_the_surname_into_the_full_name(enriched: Enrichment) -> None:
    people = counts(enriched, "person")
    assert people["Mark Esper"] == 2
    assert "Esper" not in people
    assert "Kim Jong Un" in people


def test_sample_countries_come_from_places_and_nationalities(enriched: Enrichment) -> None:
    assert enriched.countries == ["JP", "KP", "KR", "US"]
    assert counts(enriched, "nationality")["Japanese"] >= 1


def test_sample_united_states_is_one_place(enriched: Enrichment) -> None:
    places = [e for e in enriched.entities if e.type == "place"]
    names = [e.text for e in places]
    assert names.count("United States") == 1
    assert not {"US", "U.S.", "The United States", "the United States"} & set(names)
    # "US" four times, "the United States" twice, "The United States" once in the body.
    assert counts(enriched, "place")["United States"] >= 6


def test_sample_entities_are_sorted_by_count_then_text(enriched: Enrichment) -> None:
    keys = [(-e.count, e.text) for e in enriched.entities]
    assert keys == sorted(keys)
    assert {e.type for e in enriched.entities} <= {"person", "organization", "place", "nationality", "event"}


def test_sample_summary_is_the_lead_of_about_sixty_words(enriched: Enrichment) -> None:
    assert enriched.summary.startswith(SAMPLE_FIRST_SENTENCE)
    assert 50 <= len(enriched.summary.split()) <= 100
    assert enriched.summary.endswith(".")


def test_sample_tone_words_and_reading_time(enriched: Enrichment, sample: ParsedArticle) -> None:
    assert enriched.tone is not None
    assert -1.0 <= enriched.tone <= 1.0
    # The sample has no free-standing punctuation, so every blank-separated token is a word.
    assert enriched.word_count == len(sample.body.split()) == 322
    assert enriched.reading_time_min == round(322 / 230, 1)


def test_sample_keywords(enriched: Enrichment) -> None:
    assert 1 <= len(enriched.keywords) <= 10
    assert any("Esper" in k or "pact" in k for k in enriched.keywords)
    words = [w.lower() for k in enriched.keywords for w in k.split()]
    assert len(words) == len(set(words)), "keywords share no word"


@pytest.mark.parametrize(("language", "title", "body"), FOREIGN, ids=[f[0] for f in FOREIGN])
def test_other_languages_get_their_code_and_no_english_analysis(
    enricher: Enricher, language: str, title: str, body: str
) -> None:
    [result] = enricher.enrich([EnrichInput(article_id=1, title=title, body=body)])
    assert result.language == language
    assert (result.entities, result.countries, result.tone) == ([], [], None)
    assert result.keywords, "yake has stopwords for fr, de and es"
    assert result.summary.startswith(body.split(". ")[0])
    assert 40 <= len(result.summary.split()) <= 100
    assert result.word_count == len(body.split())


@pytest.fixture
def pipe_calls(enricher: Enricher, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts of every `nlp.pipe` call the Enricher makes during the test, call by call."""
    calls: list[list[str]] = []
    pipe = enricher.nlp.pipe

    def recording_pipe(texts: Iterable[str], **kwargs: Any) -> Iterator[Doc]:
        texts = list(texts)
        calls.append(texts)
        return pipe(texts, **kwargs)

    monkeypatch.setattr(enricher.nlp, "pipe", recording_pipe)
    return calls


def test_mixed_batch_keeps_order_and_calls_spacy_once(
    enricher: Enricher, sample: ParsedArticle, pipe_calls: list[list[str]]
) -> None:
    items = [
        EnrichInput(article_id=1, title=sample.title, body=sample.body),
        EnrichInput(article_id=2, title=FOREIGN[0][1], body=FRENCH),
        EnrichInput(article_id=3, title=sample.title, body=sample.body),
    ]
    results = enricher.enrich(items)
    assert [r.article_id for r in results] == [1, 2, 3]
    assert [r.language for r in results] == ["en", "fr", "en"]
    assert [len(texts) for texts in pipe_calls] == [2], "both English bodies in one nlp.pipe call"
    assert results[2].model_copy(update={"article_id": 1}) == results[0]
    assert counts(results[2], "person")["Mark Esper"] == 2
    assert results[1].entities == []


def test_a_batch_too_long_for_one_ner_call_is_split_without_changing_results(
    enricher: Enricher, sample: ParsedArticle, pipe_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [EnrichInput(article_id=i, title=sample.title, body=sample.body) for i in range(3)]
    whole = enricher.enrich(items)
    monkeypatch.setattr(enrich, "NER_BATCH_MAX_CHARS", 2 * len(sample.body))
    assert enricher.enrich(items) == whole
    assert [len(texts) for texts in pipe_calls] == [3, 2, 1]


def test_ner_batches_and_ner_text() -> None:
    assert ner_batches(["aaaa", "bb", "cc", "dddddd", "e"], 6) == [["aaaa", "bb"], ["cc"], ["dddddd"], ["e"]]
    assert ner_batches(["x" * 10, "y"], 6) == [["x" * 10], ["y"]]
    assert ner_batches([], 6) == []
    assert ner_text("short body") == "short body"
    long_body = "word " * (NER_MAX_CHARS // 5 + 10)
    assert len(ner_text(long_body)) <= NER_MAX_CHARS
    assert ner_text(long_body).endswith("word")


@pytest.mark.parametrize(
    ("title", "body", "words"),
    [("", "", 0), ("Storm", "", 0), ("", "Hello", 1), ("Storm warning", "Rain.", 1), ("", "   \n\n  ", 0)],
)
def test_empty_and_one_word_bodies_do_not_crash(enricher: Enricher, title: str, body: str, words: int) -> None:
    [result] = enricher.enrich([EnrichInput(article_id=1, title=title, body=body)])
    assert result.word_count == words
    assert result.summary == " ".join(body.split())
    assert result.tone is None or -1.0 <= result.tone <= 1.0
    assert result.countries == []


def test_empty_batch(enricher: Enricher) -> None:
    assert enricher.enrich([]) == []


def test_too_little_text_leaves_the_language_open(enricher: Enricher) -> None:
    assert enricher.detect_language("", "Hello") is None
    assert enricher.detect_language("Trump arrives in Osaka", "") == "en"


def test_distinct_keywords_drop_overlaps_and_dates() -> None:
    phrases = ["Japan defense chiefs", "defense chiefs affirm", "Monday", "January 2019", "Mark Esper", "Esper",
               "security pact"]
    assert distinct_keywords(phrases, 10) == ["Japan defense chiefs", "Mark Esper", "security pact"]
    assert distinct_keywords(phrases, 2) == ["Japan defense chiefs", "Mark Esper"]
