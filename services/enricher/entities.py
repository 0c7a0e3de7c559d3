"""Named entities of one article with mention counts, and the countries they name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from spacy.tokens import Doc

from services.enricher.countries import country_code, demonym_code, display_name, region_code
from shared.records import EntityMention

# spaCy (OntoNotes) labels kept, by the type the consumer record uses; the rest (dates, money...) is not news.
ENTITY_TYPES: dict[str, str] = {
    "PERSON": "person",
    "ORG": "organization",
    "GPE": "place",
    "LOC": "place",
    "FAC": "place",
    "NORP": "nationality",
    "EVENT": "event",
}
# Where "The" is part of the name rather than an article, it stays.
_KEEP_ARTICLE = frozenset({"the hague"})
# So that "Martin Luther King Jr." is still found as "King" later on.
_NAME_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"})
_QUOTES = "\"'“”‘’«»"


def clean_name(text: str, entity_type: str) -> str:
    """An entity's text as counted: blanks normalised, quotes, possessive and (for some types) a leading "the" off."""
    name = " ".join(text.split())
    for possessive in ("'s", "’s"):
        if name.endswith(possessive):
            name = name[: -len(possessive)]
    name = name.strip(_QUOTES + " ")
    lower = name.lower()
    if entity_type in ("place", "organization") and lower.startswith("the ") and lower not in _KEEP_ARTICLE:
        name = name[4:].lstrip() or name
    return name


def surname(full_name: str) -> str | None:
    """The last name of a multi-word personal name ("Mark Esper" -> "Esper"); None for a single word."""
    words = full_name.split()
    while len(words) > 1 and words[-1].lower() in _NAME_SUFFIXES:
        words.pop()
    return words[-1] if len(words) > 1 else None


class _Surnames:
    """Full personal names seen so far in one article, by surname; None where two full names share one."""

    def __init__(self) -> None:
        self._full: dict[str, str | None] = {}

    def see(self, full_name: str) -> None:
        last = surname(full_name)
        if last is None:
            return
        known = self._full.get(last, full_name)
        # "Trump" after both "Donald Trump" and "Melania Trump" could be either: it is left alone.
        self._full[last] = full_name if known == full_name else None

    def full_name(self, name: str) -> str:
        return self._full.get(name) or name


def count_mentions(mentions: Iterable[tuple[str, str]]) -> list[EntityMention]:
    """Entities with counts from (text, spaCy label) mentions in article order, most mentioned first."""
    counts: Counter[tuple[str, str]] = Counter()
    surnames = _Surnames()
    for text, label in mentions:
        entity_type = ENTITY_TYPES.get(label)
        if entity_type is None:
            continue
        name = clean_name(text, entity_type)
        if not any(c.isalnum() for c in name):
            continue
        if entity_type == "person":
            if " " in name:
                surnames.see(name)
            else:
                name = surnames.full_name(name)
        elif entity_type == "place" and (code := country_code(name)):
            name = display_name(code)
        counts[name, entity_type] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1]))
    return [EntityMention(text=name, type=entity_type, count=n) for (name, entity_type), n in ranked]


def extract_entities(doc: Doc) -> list[EntityMention]:
    """The people, organisations, places, nationalities and events a parsed article mentions, with counts."""
    return count_mentions((ent.text, ent.label_) for ent in doc.ents)


def entity_countries(entities: Iterable[EntityMention]) -> list[str]:
    """Sorted ISO alpha-2 codes of the countries that places and nationalities name."""
    codes: set[str] = set()
    for entity in entities:
        if entity.type == "place":
            code = country_code(entity.text) or region_code(entity.text)
        elif entity.type == "nationality":
            code = demonym_code(entity.text) or country_code(entity.text)
        else:
            continue
        if code:
            codes.add(code)
    return sorted(codes)
