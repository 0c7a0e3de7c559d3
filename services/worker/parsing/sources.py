"""Credit lines: spotting the source named on a drop's last line, and its display form."""

from __future__ import annotations

from shared.text import normalise_blanks

# Credit line (case folded) -> how the source is shown. Sources not listed are title-cased.
KNOWN_SOURCES: dict[str, str] = {
    "afp": "AFP",
    "agence france-presse": "Agence France-Presse",
    "ap": "Associated Press",
    "associated press": "Associated Press",
    "the associated press": "Associated Press",
    "bbc": "BBC",
    "bbc news": "BBC News",
    "bloomberg news": "Bloomberg News",
    "globe staff": "Globe Staff",
    "reuter": "Reuters",
    "reuters": "Reuters",
    "wikinews": "Wikinews",
}

MAX_CREDIT_WORDS = 5
MAX_CREDIT_CHARS = 40

# A credit names a source; a line with any of these is a sentence or a quotation.
_SENTENCE_PUNCTUATION = frozenset('.!?;:…"“”')


def _key(line: str) -> str:
    """The form a credit is looked up in: blanks normalised, case folded."""
    return normalise_blanks(line).casefold()


def is_credit_line(line: str) -> bool:
    """Whether a drop's last line is a credit (a source's name) rather than a paragraph."""
    line = normalise_blanks(line)
    if not line or len(line) > MAX_CREDIT_CHARS or len(line.split()) > MAX_CREDIT_WORDS:
        return False
    if any(char in _SENTENCE_PUNCTUATION for char in line):
        return False
    # Credits are lower case in practice; a short capitalised last line is usually text,
    # unless it is exactly a known source ("Reuters", "AP").
    if _key(line) in KNOWN_SOURCES:
        return True
    return line == line.lower() and any(char.isalpha() for char in line)


def display_source(credit: str) -> str:
    """The display form of a credit line: the known name, else each word capitalised."""
    key = _key(credit)
    if key in KNOWN_SOURCES:
        return KNOWN_SOURCES[key]
    # Not str.title(), which writes "globe's" as "Globe'S".
    return " ".join(word[:1].upper() + word[1:] for word in key.split())
