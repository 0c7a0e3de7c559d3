"""Line normalisation (blanks, invisible characters, quotes) and the exact-duplicate key: the parser uses
them, and storage re-keys stored articles with the same definition (`newsflow clusters rebuild`)."""

from __future__ import annotations

import hashlib
import re

# Drops come with CRLF, CR or LF line ends, sometimes mixed. Other Unicode separators
# (U+2028, form feed, ...) are soft breaks inside a paragraph, not paragraph ends.
_LINE_END_RE = re.compile(r"\r\n|\r|\n")

# Zero-width characters are invisible noise that would make equal words compare unequal;
# stray control codes (a DOS end-of-file mark, a C1 byte latin-1 let through) print as
# nothing or as garbage. Tab and the line and page breaks are blanks, not controls here.
# U+0085 (next line) is left to the blanks: it separates words.
_INVISIBLE_RE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")

_LSQUO, _RSQUO = "\N{LEFT SINGLE QUOTATION MARK}", "\N{RIGHT SINGLE QUOTATION MARK}"
_LDQUO, _RDQUO = "\N{LEFT DOUBLE QUOTATION MARK}", "\N{RIGHT DOUBLE QUOTATION MARK}"

# Some sources type a double quote as two single quotes, opening and closing.
_DOUBLED_SINGLE_QUOTES = ((_LSQUO * 2, _LDQUO), (_RSQUO * 2, _RDQUO))

# Syndicated copies differ in typography; the duplicate key sees one form of each quote.
_HASH_DOUBLE_QUOTES_RE = re.compile(f"[{_LDQUO}{_RDQUO}]")
_HASH_SINGLE_QUOTES_RE = re.compile(f"[{_LSQUO}{_RSQUO}]")


def split_lines(text: str) -> list[str]:
    """Split text at CRLF, CR and LF line ends."""
    return _LINE_END_RE.split(text)


def remove_invisible(text: str) -> str:
    return _INVISIBLE_RE.sub("", text)


def collapse_blanks(line: str) -> str:
    """Every run of blanks as one space, the ends stripped. str.split() splits at what `\\s` matches,
    Unicode-aware: tabs and the non-breaking U+00A0, U+202F and U+2007 too (and is several times faster)."""
    return " ".join(line.split())


def normalise_blanks(line: str) -> str:
    """Turn every run of blanks into one space, drop invisible characters, strip the ends."""
    return collapse_blanks(remove_invisible(line))


def normalise_line(line: str) -> str:
    """Normalise a line's blanks and render doubled single quotes as double quotes."""
    return normalise_visible_line(remove_invisible(line))


def normalise_visible_line(line: str) -> str:
    """normalise_line for a line whose invisible characters are gone (the parser removes them from the
    whole text at once, not line by line)."""
    line = collapse_blanks(line)
    for doubled, double in _DOUBLED_SINGLE_QUOTES:
        line = line.replace(doubled, double)
    return line


def hash_key(paragraphs: list[str]) -> str:
    """The body as the duplicate check sees it: blanks collapsed, paragraph breaks folded into them (a copy
    whose lines are broken differently is the same text), quotes folded, case folded."""
    text = " ".join(normalise_blanks(paragraph) for paragraph in paragraphs)
    for doubled, _ in _DOUBLED_SINGLE_QUOTES:
        text = text.replace(doubled, '"')
    text = _HASH_DOUBLE_QUOTES_RE.sub('"', text)
    return _HASH_SINGLE_QUOTES_RE.sub("'", text).casefold()


def content_hash(paragraphs: list[str]) -> str:
    """SHA-256 hex of the normalised body: the exact-duplicate key (spec section 4)."""
    return hashlib.sha256(hash_key(paragraphs).encode("utf-8")).hexdigest()
