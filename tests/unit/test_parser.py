"""parse_drop on good and imperfect drops: the reference sample, encodings, layout, header, credit."""

from __future__ import annotations

import codecs
from datetime import date
from pathlib import Path

import pytest

from services.worker.parsing import parse_drop
from shared.records import ArticleWarning, ParsedArticle

ROOT = Path(__file__).parents[2]
SEEDS = ROOT / "seeds"
SAMPLE = (SEEDS / "000_6488bdc6352e6c22.txt").read_bytes()
SAMPLE_TEXT = SAMPLE.decode("utf-8")
SAMPLE_TITLE = "U.S., Japan defense chiefs affirm security pact Trump questioned"

SIMPLE = """date 2021-03-04 Bridge reopens after repairs
The Elm Street bridge reopened to traffic on Thursday after eight months of repairs.
Engineers replaced the deck and two of the four supports.
associated press
"""


def article(data: bytes, **kwargs: int) -> ParsedArticle:
    """Parse data and insist that it became an article."""
    result = parse_drop(data, **kwargs)
    assert isinstance(result, ParsedArticle), result
    return result


def simple(text: str = SIMPLE) -> bytes:
    """A UTF-8 drop of text."""
    return text.encode("utf-8")


# --- the reference sample --------------------------------------------------------------


def test_reference_sample() -> None:
    parsed = article(SAMPLE)
    assert parsed.title == SAMPLE_TITLE
    assert parsed.published_on == date(2019, 6, 26)
    assert parsed.source == "Bloomberg News"
    assert parsed.source_raw == "bloomberg news"
    assert len(parsed.paragraphs) == 7
    assert "Advertisement" not in parsed.paragraphs
    assert parsed.paragraphs[0].startswith("Top Japanese and US military officials")
    assert parsed.paragraphs[-1].startswith("Trump sees the accord with Japan")
    assert parsed.warnings == []
    assert parsed.encoding == "utf-8"
    assert parsed.dateline is None


def test_reference_sample_quotes_become_double_quotes() -> None:
    parsed = article(SAMPLE)
    assert "‘‘work together" in SAMPLE_TEXT
    assert any("“work together to strengthen the Japan-US alliance,”" in p for p in parsed.paragraphs)
    assert not any("‘‘" in p or "’’" in p for p in parsed.paragraphs)
    assert any("Japan’s Defense Ministry" in p for p in parsed.paragraphs)


def test_reference_sample_header_starts_with_a_blank() -> None:
    assert SAMPLE_TEXT.startswith(" date ")
    assert article(SAMPLE).title == SAMPLE_TITLE


def test_parse_is_deterministic() -> None:
    assert parse_drop(SAMPLE) == parse_drop(SAMPLE)


# --- encodings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        pytest.param(SAMPLE, "utf-8", id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + SAMPLE, "utf-8-sig", id="utf-8-bom"),
        pytest.param(SAMPLE_TEXT.encode("utf-16"), "utf-16", id="utf-16-native-bom"),
        pytest.param(codecs.BOM_UTF16_LE + SAMPLE_TEXT.encode("utf-16-le"), "utf-16", id="utf-16-le-bom"),
        pytest.param(codecs.BOM_UTF16_BE + SAMPLE_TEXT.encode("utf-16-be"), "utf-16", id="utf-16-be-bom"),
        pytest.param(SAMPLE_TEXT.encode("utf-16-le"), "utf-16", id="utf-16-le-no-bom"),
        pytest.param(SAMPLE_TEXT.encode("utf-16-be"), "utf-16", id="utf-16-be-no-bom"),
        pytest.param(SAMPLE_TEXT.encode("cp1252"), "cp1252", id="cp1252"),
    ],
)
def test_encodings_give_the_same_article(data: bytes, encoding: str) -> None:
    reference, parsed = article(SAMPLE), article(data)
    assert parsed.encoding == encoding
    assert parsed.model_dump(exclude={"encoding"}) == reference.model_dump(exclude={"encoding"})


def test_cp1252_bytes_decode_as_cp1252() -> None:
    text = "date 2019-09-18 Café owners fight plan\n‘‘We are not against the work,’’ she said — twice.\nreuter\n"
    parsed = article(text.encode("cp1252"))
    assert parsed.encoding == "cp1252"
    assert parsed.title == "Café owners fight plan"
    assert parsed.paragraphs == ["“We are not against the work,” she said — twice."]


def test_latin1_when_cp1252_cannot_decode() -> None:
    # 0x81 is undefined in cp1252, so only latin-1 can read these bytes.
    data = "date 2019-09-18 Naïve café plan\nThe façade of the café will be rebuilt.\x81\n".encode("latin-1")
    parsed = article(data)
    assert parsed.encoding == "latin-1"
    assert parsed.title == "Naïve café plan"
    assert parsed.paragraphs == ["The façade of the café will be rebuilt."]


def test_invalid_utf8_is_not_half_read_as_utf8() -> None:
    # Mostly valid UTF-8 with one stray cp1252 byte: the whole file is read as cp1252.
    data = "date 2019-09-18 Plan\nIt’s settled.\n".encode() + b"Price: 5\x80\n"
    assert article(data).encoding == "cp1252"


def test_mojibake_is_repaired() -> None:
    mangled = SAMPLE_TEXT.encode("utf-8").decode("cp1252").encode("utf-8")
    assert "Japanâ€™s".encode() in mangled
    reference, parsed = article(SAMPLE), article(mangled)
    assert parsed.paragraphs == reference.paragraphs
    assert parsed.content_hash == reference.content_hash


def test_mojibake_repair_leaves_quotes_and_dashes_alone() -> None:
    text = 'date 2019-01-01 Title\nShe said “yes” — and he said "no"… it’s fine.\nJapanâ€™s ministry agreed.\n'
    parsed = article(simple(text))
    assert parsed.paragraphs == ['She said “yes” — and he said "no"… it’s fine.', "Japan’s ministry agreed."]


# --- line ends, blanks, invisible characters --------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(SAMPLE.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(SAMPLE.replace(b"\n", b"\r"), id="cr"),
        pytest.param(codecs.BOM_UTF8 + SAMPLE.replace(b"\n", b"\r\n"), id="bom-crlf"),
        pytest.param(SAMPLE.replace(b"\n", b"   \n\n\n"), id="trailing-blanks-and-blank-lines"),
        pytest.param(SAMPLE.replace(b"\n", b"\t\n\t"), id="tabs"),
        pytest.param(b"\n\n  \n" + SAMPLE + b"\n\n\n", id="leading-and-trailing-blank-lines"),
        pytest.param(SAMPLE_TEXT.replace("\n", "\r\n").encode("utf-16"), id="utf-16-crlf"),
    ],
)
def test_line_ends_and_blank_lines_do_not_matter(data: bytes) -> None:
    reference, parsed = article(SAMPLE), article(data)
    assert parsed.model_dump(exclude={"encoding"}) == reference.model_dump(exclude={"encoding"})


def test_mixed_line_ends() -> None:
    data = b"date 2021-03-04 Title\r\nFirst.\rSecond.\nThird.\r\n"
    assert article(data).paragraphs == ["First.", "Second.", "Third."]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("Rates\u00a0rose\u202fby\u20072 points.", "Rates rose by 2 points.", id="non-breaking"),
        pytest.param("Rates\u200b rose\u200c by\u200d 2\u2060 points.\ufeff", "Rates rose by 2 points.", id="0-width"),
        pytest.param("\t Rates \t\t rose   by 2 points.  \t", "Rates rose by 2 points.", id="tabs-and-runs"),
    ],
)
def test_blanks_are_normalised(line: str, expected: str) -> None:
    parsed = article(simple(f"date 2021-03-04 Title\n{line}\n"))
    assert parsed.paragraphs == [expected]


def test_title_is_normalised_too() -> None:
    parsed = article(simple("date 2021-03-04  ‘‘Bridge’’\u00a0\treopens  \nText.\n"))
    assert parsed.title == "“Bridge” reopens"


def test_line_of_zero_width_characters_is_blank() -> None:
    parsed = article(simple("date 2021-03-04 Title\nFirst.\n\u200b\u200b\nSecond.\n"))
    assert parsed.paragraphs == ["First.", "Second."]


# --- boilerplate -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Advertisement",
        "ADVERTISEMENT",
        "  advertisement  ",
        "Story continues below advertisement",
        "Skip Advertisement",
        "Continue reading the main story",
        "Sponsored content",
        "SPONSORED\u00a0CONTENT",
        "Story  continues\tbelow ADVERTISEMENT",
        "— Advertisement —",
    ],
)
def test_boilerplate_is_dropped_wherever_it_stands(line: str) -> None:
    text = f"{line}\ndate 2021-03-04 Title\n{line}\nFirst.\n{line}\nSecond.\n{line}\nreuters\n{line}\n"
    parsed = article(simple(text))
    assert parsed.title == "Title"
    assert parsed.paragraphs == ["First.", "Second."]
    assert parsed.source == "Reuters"


@pytest.mark.parametrize(
    "line",
    ["Advertisement revenue fell 5 percent.", "The advertisement ran for a week.", "Sponsored content is labelled."],
)
def test_text_mentioning_boilerplate_is_kept(line: str) -> None:
    assert article(simple(f"date 2021-03-04 Title\n{line}\n")).paragraphs == [line]


# --- credit line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credit", "source"),
    [
        ("bloomberg news", "Bloomberg News"),
        ("bbc news", "BBC News"),
        ("reuter", "Reuters"),
        ("reuters", "Reuters"),
        ("ap", "Associated Press"),
        ("associated press", "Associated Press"),
        ("globe staff", "Globe Staff"),
        ("wikinews", "Wikinews"),
        ("  associated\tpress  ", "Associated Press"),
        ("the daily courier", "The Daily Courier"),
        ("by maria lopez, globe staff", "By Maria Lopez, Globe Staff"),
        ("Reuters", "Reuters"),
        ("AP", "Associated Press"),
        ("BBC News", "BBC News"),
    ],
)
def test_credit_line_is_the_source(credit: str, source: str) -> None:
    parsed = article(simple(f"date 2021-03-04 Title\nFirst.\nSecond.\n{credit}\n"))
    assert parsed.source == source
    assert parsed.source_raw == " ".join(credit.split())
    assert parsed.paragraphs == ["First.", "Second."]


@pytest.mark.parametrize(
    "last",
    [
        pytest.param("Officials Declined To Comment Further", id="capitalised"),
        pytest.param("The Daily Courier", id="capitalised-unknown-source"),
        pytest.param("more details to follow.", id="sentence-punctuation"),
        pytest.param("she asked: why now", id="colon"),
        pytest.param("and that, in the end, was how it went", id="too-many-words"),
        pytest.param("reported by the regional desk staffers", id="more-than-40-chars-or-5-words"),
        pytest.param("2019", id="no-letters"),
    ],
)
def test_last_line_that_is_text_stays_a_paragraph(last: str) -> None:
    parsed = article(simple(f"date 2021-03-04 Title\nFirst.\n{last}\n"))
    assert parsed.source is None
    assert parsed.source_raw is None
    assert parsed.paragraphs == ["First.", last]


def test_no_credit_line() -> None:
    parsed = article(simple("date 2021-03-04 Title\nFirst.\nThe council meets again on Monday.\n"))
    assert (parsed.source, parsed.source_raw) == (None, None)
    assert parsed.paragraphs == ["First.", "The council meets again on Monday."]
    assert parsed.warnings == []


def test_credit_line_in_the_middle_is_a_paragraph() -> None:
    parsed = article(simple("date 2021-03-04 Title\nFirst.\nreuters\nLast paragraph here.\n"))
    assert parsed.source is None
    assert parsed.paragraphs == ["First.", "reuters", "Last paragraph here."]


# --- dateline --------------------------------------------------------------------------


@pytest.mark.parametrize("dateline", ["Friday, January 4, 2019", "4 January 2019", "Friday, Jan. 4, 2019"])
def test_dateline_stays_a_paragraph_and_is_reported(dateline: str) -> None:
    parsed = article(simple(f"date 2019-01-04 Title\n{dateline}\nFirst.\nwikinews\n"))
    assert parsed.dateline == dateline
    assert parsed.paragraphs == [dateline, "First."]


@pytest.mark.parametrize(
    "first",
    ["Friday, January 4, 2019 In May, a study was published.", "On Friday, January 4, 2019, it rained."],
)
def test_paragraph_starting_with_a_date_is_not_a_dateline(first: str) -> None:
    parsed = article(simple(f"date 2019-01-04 Title\n{first}\nSecond.\n"))
    assert parsed.dateline is None
    assert parsed.paragraphs[0] == first


def test_dateline_only_counts_as_first_paragraph() -> None:
    parsed = article(simple("date 2019-01-04 Title\nFirst.\nFriday, January 4, 2019\n"))
    assert parsed.dateline is None


# --- header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(" date 2021-03-04 Bridge reopens", id="leading-blank"),
        pytest.param("\t  date\t2021-03-04   Bridge reopens  ", id="tabs-and-runs"),
        pytest.param("\u00a0date 2021-03-04 Bridge reopens", id="leading-nbsp"),
        pytest.param("Date 2021-03-04 Bridge reopens", id="capital-d"),
    ],
)
def test_header_variants(header: str) -> None:
    parsed = article(simple(f"\n\n{header}\nFirst.\n"))
    assert (parsed.title, parsed.published_on, parsed.warnings) == ("Bridge reopens", date(2021, 3, 4), [])


@pytest.mark.parametrize(
    "first",
    [
        pytest.param("Bridge reopens after repairs", id="no-header"),
        pytest.param("2021-03-04 Bridge reopens after repairs", id="no-date-keyword"),
        pytest.param("dated 2021-03-04 Bridge reopens", id="other-keyword"),
        pytest.param("date: 2021-03-04 Bridge reopens", id="keyword-with-colon"),
        pytest.param("date 2021-03-04", id="no-title"),
        pytest.param("date", id="keyword-only"),
    ],
)
def test_header_missing_or_malformed(first: str) -> None:
    parsed = article(simple(f"{first}\nFirst.\nSecond.\nreuters\n"))
    assert parsed.title == first
    assert parsed.published_on is None
    assert parsed.warnings == [ArticleWarning.HEADER_MISSING]
    assert parsed.paragraphs == ["First.", "Second."]
    assert parsed.source == "Reuters"


@pytest.mark.parametrize(
    "token",
    ["2019-02-30", "2019-13-01", "2019-00-10", "yesterday", "2019-6-26", "26/06/2019", "20190626", "2019-W26-3"],
)
def test_impossible_or_unparseable_date(token: str) -> None:
    parsed = article(simple(f"date {token} Bridge reopens\nFirst.\n"))
    assert parsed.title == "Bridge reopens"
    assert parsed.published_on is None
    assert parsed.warnings == [ArticleWarning.DATE_INVALID]
    assert parsed.paragraphs == ["First."]


def test_leap_day_is_a_valid_date() -> None:
    assert article(simple("date 2020-02-29 Leap day\nFirst.\n")).published_on == date(2020, 2, 29)
