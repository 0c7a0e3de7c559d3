"""The parser's parts: decoding, line normalisation, boilerplate and credit-line rules."""

from __future__ import annotations

import codecs

import pytest

from services.worker.parsing import parse_drop
from services.worker.parsing.boilerplate import BOILERPLATE_LINES, is_boilerplate
from services.worker.parsing.decode import DecodedText, control_share, decode_drop, fix_mojibake
from services.worker.parsing.parser import parse_header
from services.worker.parsing.sources import KNOWN_SOURCES, display_source, is_credit_line
from shared.records import ArticleWarning, DropReason, ParsedArticle, Rejection
from shared.text import normalise_line, split_lines


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        (b"caf\xc3\xa9", "café", "utf-8"),
        (codecs.BOM_UTF8 + b"caf\xc3\xa9", "café", "utf-8-sig"),
        ("café".encode("utf-16"), "café", "utf-16"),
        (b"caf\xe9 \x93ok\x94", "café “ok”", "cp1252"),
        (b"the caf\xe9 on the corner\x81", "the café on the corner\x81", "latin-1"),
        (codecs.BOM_UTF8 + b"caf\xe9", "café", "cp1252"),
    ],
)
def test_decode(data: bytes, text: str, encoding: str) -> None:
    assert decode_drop(data) == DecodedText(text, encoding)


def test_decode_rejects_nul_bytes() -> None:
    result = decode_drop(b"date\x00 2019")
    assert isinstance(result, Rejection)
    assert result.reason is DropReason.NOT_TEXT


def test_control_share() -> None:
    assert control_share("") == 0.0
    assert control_share("ab\t\n\r\x0c") == 0.0
    assert control_share("ab\x01\x9f") == 0.5


def test_fix_mojibake_only_repairs_encoding() -> None:
    assert fix_mojibake("doesnâ€™t\nfine “quoted” line\n") == "doesn’t\nfine “quoted” line\n"
    assert fix_mojibake("‘‘work’’ — ﬁne ｗｉｄｅ") == "‘‘work’’ — ﬁne ｗｉｄｅ"


def test_split_lines() -> None:
    assert split_lines("a\r\nb\rc\nd\u2028e") == ["a", "b", "c", "d\u2028e"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  ‘‘quoted’’  ", "“quoted”"),
        ("it’s ‘single’", "it’s ‘single’"),
        ("a\u00a0b\u202fc\u2007d", "a b c d"),
        ("a\u200bb\u200cc\u200dd\u2060e\ufeff", "abcde"),
        ("a\t\t b   c", "a b c"),
        ("a\u2028b", "a b"),
        ("\x1aend\x7f", "end"),
    ],
)
def test_normalise_line(line: str, expected: str) -> None:
    assert normalise_line(line) == expected


@pytest.mark.parametrize("line", BOILERPLATE_LINES)
def test_every_listed_boilerplate_line_matches(line: str) -> None:
    assert is_boilerplate(line)
    assert is_boilerplate(f"  {line.upper()}  ")


@pytest.mark.parametrize("line", ["", "—", "Advertisements are banned", "The ad"])
def test_not_boilerplate(line: str) -> None:
    assert not is_boilerplate(line)


@pytest.mark.parametrize("credit", sorted(KNOWN_SOURCES))
def test_every_known_source_is_a_credit(credit: str) -> None:
    assert is_credit_line(credit)
    assert is_credit_line(credit.upper())
    assert display_source(credit) == KNOWN_SOURCES[credit]


@pytest.mark.parametrize(
    ("line", "is_credit"),
    [
        ("bloomberg news", True),
        ("five words are quite enough", True),
        ("six words are one word too many", False),
        ("a credit line longer than forty characters", False),
        ("Bloomberg", False),
        ("wire reports.", False),
        ("", False),
    ],
)
def test_is_credit_line(line: str, is_credit: bool) -> None:
    assert is_credit_line(line) is is_credit


def test_display_source_capitalises_unknown_sources() -> None:
    assert display_source("the globe's staff") == "The Globe's Staff"
    assert display_source("  new   york times ") == "New York Times"


@pytest.mark.parametrize(
    ("line", "title", "warning"),
    [
        ("date 2019-06-26 Title here", "Title here", None),
        ("date 2019-02-30 Title here", "Title here", ArticleWarning.DATE_INVALID),
        ("date soon Title here", "Title here", ArticleWarning.DATE_INVALID),
        ("Title here", "Title here", ArticleWarning.HEADER_MISSING),
    ],
)
def test_parse_header(line: str, title: str, warning: ArticleWarning | None) -> None:
    header = parse_header(line)
    assert (header.title, header.warning) == (title, warning)
    assert (header.published_on is None) is (warning is not None)


@pytest.mark.parametrize(
    ("text", "dateline"),
    [("Friday, January 4, 2019", True), ("4 January 2019", True), ("Jan. 4, 2019.", True),
     ("Friday was sunny.", False), ("Trump arrives in Osaka", False)],
)  # fmt: skip
def test_a_leading_date_paragraph_is_the_dateline(text: str, dateline: bool) -> None:
    result = parse_drop(f"date 2019-01-04 Title\n{text}\nThe news itself.\n".encode())
    assert isinstance(result, ParsedArticle)
    assert result.dateline == (text if dateline else None)
