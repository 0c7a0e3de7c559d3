"""Plain-text measures of an article: lead summary, word count, reading time, a sentence splitter."""

from __future__ import annotations

import re
from collections.abc import Sequence

SUMMARY_WORDS = 60
# A lead of whole sentences may run past SUMMARY_WORDS, but not past this: a second sentence that would
# is left out, and a first sentence that alone does is cut.
SUMMARY_MAX_WORDS = 100
WORDS_PER_MINUTE = 230
ELLIPSIS = "…"

# A word is a run of non-blanks with at least one letter or digit, so a free-standing dash is not one.
_WORD = re.compile(r"[^\W_]")
# A sentence ends at . ! ? … (with closing quotes or brackets) before a blank, or at CJK full stops.
_SENTENCE_END = re.compile(r"[.!?…]+(?:\s?[\"'”’»)\]])*\s+|[。！？]+[\"”’」』)）]*\s*")
_TERMINALS = ".!?…。！？\"'”’»)]"
_OPENERS = "\"'“‘„«(¿¡"
# Words a full stop follows without ending the sentence, in the languages the splitter mostly sees.
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "sra", "srta", "dra", "jr", "gen", "gov", "sen", "rep", "lt",
    "col", "capt", "sgt", "mt", "no", "nr", "vs", "mme", "mlle", "mm", "hr", "hrn", "frau", "bzw", "ca", "evtl",
    "ggf", "dh", "zb", "usw", "vgl", "ua", "sig", "sres", "ud", "uds", "dña",
})  # fmt: skip


def word_count(text: str) -> int:
    """Words in `text`: blank-separated runs holding a letter or digit."""
    return sum(1 for token in text.split() if _WORD.search(token))


def reading_time_min(words: int) -> float:
    """Minutes to read `words` words at WORDS_PER_MINUTE, to one decimal."""
    return round(words / WORDS_PER_MINUTE, 1)


def summary(sentences: Sequence[str], dateline: str | None = None) -> str:
    """The lead: whole sentences until SUMMARY_WORDS words, a long one cut, and the body's leading dateline
    (found by the parser, "Friday, January 4, 2019") skipped: the date is not the news."""
    parts: list[str] = []
    skip = " ".join(dateline.split()).rstrip(".") if dateline else ""
    words = 0
    for raw in sentences:
        tokens = raw.split()
        if not tokens:
            continue
        sentence, n = " ".join(tokens), len(tokens)
        if not parts and skip and sentence.rstrip(".") == skip:
            skip = ""
            continue
        if parts and words + n > SUMMARY_MAX_WORDS:
            break
        parts.append(sentence)
        words += n
        if words >= SUMMARY_WORDS:
            break
    if not parts:
        return " ".join(dateline.split()) if dateline else ""
    if words > SUMMARY_MAX_WORDS:
        cut = " ".join(parts[0].split()[:SUMMARY_WORDS])
        return cut.rstrip(",;:–—-") + ELLIPSIS
    return " ".join(parts)


def lead_text(title: str, body: str, max_words: int) -> str:
    """The title and the first `max_words` words of the body, one line each, every line ending a sentence."""
    lines: list[str] = []
    budget = max_words
    for number, line in enumerate([title, *body.splitlines()]):
        words = line.split()
        if number > 0:
            words = words[:budget]
            budget -= len(words)
        if words:
            text = " ".join(words)
            # Titles and datelines have no full stop: without one they would run into the next sentence.
            lines.append(text if text[-1] in _TERMINALS else text + ".")
        if budget <= 0:
            break
    return "\n".join(lines)


def _ends_sentence(paragraph: str, start: int, match: re.Match[str]) -> bool:
    """Whether a candidate end really ends a sentence (not "M. Macron", "z.B. die", "am 3. Oktober")."""
    if not match.group()[-1].isspace():
        return True  # CJK full stop
    following = paragraph[match.end() :].lstrip(_OPENERS)
    if not following or not (following[0].isupper() or following[0].isdigit()):
        return False
    before = paragraph[start : match.start() + 1].split()
    word = before[-1].rstrip(".").lower() if before else ""
    if not word:
        return True
    is_initial = len(word) == 1 and word.isalpha()
    is_ordinal = word.isdigit() and len(word) <= 2 and match.group().startswith(".")
    return not (is_initial or is_ordinal or word.replace(".", "") in _ABBREVIATIONS)


def split_sentences(text: str) -> list[str]:
    """Sentences of any language by punctuation and line breaks: the fallback where spaCy is not used."""
    sentences: list[str] = []
    for paragraph in text.splitlines():
        paragraph = paragraph.strip()
        start = 0
        for match in _SENTENCE_END.finditer(paragraph):
            if match.end() < len(paragraph) and _ends_sentence(paragraph, start, match):
                sentences.append(paragraph[start : match.end()].strip())
                start = match.end()
        if tail := paragraph[start:].strip():
            sentences.append(tail)
    return sentences
