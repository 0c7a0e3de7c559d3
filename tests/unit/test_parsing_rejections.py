"""parse_drop's rejections (spec section 1, bad input) and the sample drops in seeds/."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from services.worker.parsing import parse_drop
from shared.records import ArticleWarning, DropReason, ParsedArticle, Rejection

ROOT = Path(__file__).parents[2]
SEEDS = ROOT / "seeds"
SAMPLE = (SEEDS / "000_6488bdc6352e6c22.txt").read_bytes()
SAMPLE_TITLE = "U.S., Japan defense chiefs affirm security pact Trump questioned"


def article(data: bytes, **kwargs: int) -> ParsedArticle:
    """Parse data and insist that it became an article."""
    result = parse_drop(data, **kwargs)
    assert isinstance(result, ParsedArticle), result
    return result


def rejection(data: bytes, **kwargs: int) -> Rejection:
    """Parse data and insist that it was rejected."""
    result = parse_drop(data, **kwargs)
    assert isinstance(result, Rejection), result
    return result


# --- rejections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="zero-bytes"),
        pytest.param(b"   \n\n\t\r\n  ", id="whitespace"),
        pytest.param(codecs.BOM_UTF8, id="utf-8-bom-only"),
        pytest.param(codecs.BOM_UTF16_LE, id="utf-16-bom-only"),
        pytest.param(" \n\n".encode("utf-16"), id="utf-16-whitespace"),
        pytest.param("\u00a0\u200b\n\u2060\n".encode(), id="invisible-only"),
        pytest.param(b"Advertisement\n\nSKIP ADVERTISEMENT\r\n", id="boilerplate-only"),
    ],
)
def test_empty(data: bytes) -> None:
    result = rejection(data)
    assert result.reason is DropReason.EMPTY
    assert result.detail


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", id="png"),
        pytest.param(SAMPLE + b"\x00", id="one-nul-in-utf-8"),
        pytest.param(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length 5 >>\nstream\n\x00\x01\x02", id="pdf"),
        pytest.param(bytes(range(1, 32)) * 20 + b"date 2021-03-04 Title\nText.\n", id="control-codes"),
        pytest.param(codecs.BOM_UTF16_LE + "date".encode("utf-16-le") + b"\x00", id="utf-16-odd-length"),
        pytest.param(codecs.BOM_UTF16_LE + b"\x00\xd8a\x00", id="utf-16-lone-surrogate"),
    ],
)
def test_not_text(data: bytes) -> None:
    result = rejection(data)
    assert result.reason is DropReason.NOT_TEXT
    assert "text" in result.detail


def test_a_few_stray_control_codes_are_tolerated_and_dropped() -> None:
    parsed = article(SAMPLE.replace(b"Advertisement", b"\x1a\x0c").replace(b"Top ", b"Top\x07 "))
    assert parsed.paragraphs == article(SAMPLE).paragraphs


def test_too_large() -> None:
    result = rejection(b"x" * 3 * 1024 * 1024)
    assert result.reason is DropReason.TOO_LARGE
    assert result.detail == "file is 3,145,728 bytes, over the 2,097,152-byte limit"


def test_too_large_is_checked_before_decoding() -> None:
    assert rejection(b"\x00" * 101, max_bytes=100).reason is DropReason.TOO_LARGE


def test_max_bytes_is_inclusive() -> None:
    assert article(SAMPLE, max_bytes=len(SAMPLE)).title == SAMPLE_TITLE
    assert rejection(SAMPLE, max_bytes=len(SAMPLE) - 1).reason is DropReason.TOO_LARGE


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("date 2021-03-04 Title\n", "no paragraph follows the header", id="header-only"),
        pytest.param(
            "date 2021-03-04 Title\nAdvertisement\nreuters\n", "no paragraph follows the header", id="furniture-credit"
        ),
        pytest.param("date 2021-03-04 Title\n\n\nwikinews\n", "no paragraph follows the header", id="credit-only"),
        pytest.param("Bridge reopens after repairs\n", "no paragraph follows the title line", id="no-header"),
    ],
)
def test_no_body(text: str, detail: str) -> None:
    result = rejection(text.encode("utf-8"))
    assert result.reason is DropReason.NO_BODY
    assert result.detail == detail


def test_a_capitalised_short_last_line_is_a_body() -> None:
    parsed = article(b"date 2021-03-04 Title\nVoters Head To Polls\n")
    assert parsed.paragraphs == ["Voters Head To Polls"]


# --- the sample drops in seeds/ --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoding", "warnings", "source", "count"),
    [
        ("101_crlf_bom.txt", "utf-8-sig", [], "Associated Press", 5),
        ("102_cp1252.txt", "cp1252", [], "Reuters", 5),
        ("103_utf16.txt", "utf-16", [], "BBC News", 4),
        ("104_no_header.txt", "utf-8", [ArticleWarning.HEADER_MISSING], "Globe Staff", 4),
        ("105_bad_date.txt", "utf-8", [ArticleWarning.DATE_INVALID], "Reuters", 3),
        ("106_no_credit.txt", "utf-8", [], None, 4),
        ("110_mojibake.txt", "utf-8", [], "Wikinews", 4),
    ],
)
def test_seed_articles(
    name: str, encoding: str, warnings: list[ArticleWarning], source: str | None, count: int
) -> None:
    parsed = article((SEEDS / name).read_bytes())
    assert (parsed.encoding, parsed.warnings, parsed.source) == (encoding, warnings, source)
    assert len(parsed.paragraphs) == count
    assert not any("â€" in p or "\ufffd" in p for p in [parsed.title, *parsed.paragraphs])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("107_empty.txt", DropReason.EMPTY),
        ("108_no_body.txt", DropReason.NO_BODY),
        ("109_binary.bin", DropReason.NOT_TEXT),
    ],
)
def test_seed_rejections(name: str, reason: DropReason) -> None:
    assert rejection((SEEDS / name).read_bytes()).reason is reason
