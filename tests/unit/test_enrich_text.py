"""Lead summary, word count, reading time, the fallback sentence splitter and the keyword lead."""

from __future__ import annotations

import pytest

from services.enricher.text import (
    lead_text,
    reading_time_min,
    split_sentences,
    summary,
    word_count,
)


def sentence(words: int, tag: str = "word") -> str:
    return " ".join([tag] * (words - 1) + ["end."])


def test_summary_takes_whole_sentences_until_sixty_words() -> None:
    first, second, third = sentence(30, "a"), sentence(30, "b"), sentence(30, "c")
    assert summary([first, second, third]) == f"{first} {second}"


def test_summary_of_a_short_text_is_all_of_it() -> None:
    assert summary([sentence(20)]) == sentence(20)
    assert summary([sentence(10, "a"), sentence(10, "b")]) == f"{sentence(10, 'a')} {sentence(10, 'b')}"


def test_summary_is_at_least_one_sentence() -> None:
    assert summary([sentence(70, "a"), sentence(10, "b")]) == sentence(70, "a")


def test_summary_leaves_out_a_sentence_that_would_make_it_far_too_long() -> None:
    assert summary([sentence(50, "a"), sentence(70, "b")]) == sentence(50, "a")


def test_a_very_long_first_sentence_is_cut_near_sixty_words() -> None:
    cut = summary([", ".join(f"clause{i}" for i in range(150)) + "."])
    assert cut.endswith("clause59…")
    assert len(cut.split()) == 60


def test_summary_skips_a_leading_dateline_and_normalises_blanks() -> None:
    dateline = "Friday, January 4, 2019"  # as the parser found it
    assert summary([dateline, "  An apartment\n\nbuilding collapsed. "], dateline) == (
        "An apartment building collapsed."
    )
    assert summary([dateline], dateline) == "Friday, January 4, 2019"
    assert summary([]) == ""
    assert summary(["", "  "]) == ""


@pytest.mark.parametrize(
    ("text", "words"),
    [("", 0), ("Hello", 1), ("Hello — world", 2), ("U.S. troops, 1,000 of them", 5), ("a\n\nb  c", 3)],
)
def test_word_count(text: str, words: int) -> None:
    assert word_count(text) == words


def test_reading_time_is_230_words_a_minute_to_one_decimal() -> None:
    assert reading_time_min(230) == 1.0
    assert reading_time_min(345) == 1.5
    assert reading_time_min(322) == 1.4
    assert reading_time_min(0) == 0.0


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("M. Macron a parlé hier. Il est parti.", ["M. Macron a parlé hier.", "Il est parti."]),
        ("Am 3. Oktober feiert Deutschland. Das ist gut.", ["Am 3. Oktober feiert Deutschland.", "Das ist gut."]),
        ("Das gilt z. B. für Berlin. Nicht für Bonn.", ["Das gilt z. B. für Berlin.", "Nicht für Bonn."]),
        ("¿Qué pasó? Nadie lo sabe.", ["¿Qué pasó?", "Nadie lo sabe."]),
        ("Il a dit : « Non. » Puis il est parti.", ["Il a dit : « Non. »", "Puis il est parti."]),
        ("Le prix est de 3.5 euros. Voilà.", ["Le prix est de 3.5 euros.", "Voilà."]),
        ("Premier paragraphe sans point\n\nDeuxième paragraphe.", ["Premier paragraphe sans point",
                                                                   "Deuxième paragraphe."]),
        ("今天下雨。明天晴天。", ["今天下雨。", "明天晴天。"]),
        ("", []),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_lead_text_ends_every_line_and_keeps_the_word_budget() -> None:
    lead = lead_text("Quake hits Japan", "Friday, January 4, 2019\n\nA strong quake hit Japan. Many fled", 8)
    assert lead == "Quake hits Japan.\nFriday, January 4, 2019.\nA strong quake hit."
    assert lead_text("", "", 10) == ""
