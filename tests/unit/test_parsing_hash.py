"""content_hash: one key for copies of the same body, another for a changed word (spec section 4)."""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

import pytest

from services.worker.parsing import parse_drop
from shared.records import ParsedArticle
from shared.text import content_hash, hash_key

SAMPLE = (Path(__file__).parents[2] / "seeds" / "000_6488bdc6352e6c22.txt").read_bytes()
SAMPLE_TEXT = SAMPLE.decode("utf-8")
STRAIGHT_QUOTES = SAMPLE_TEXT.replace("‘‘", '"').replace("’’", '"').replace("’", "'")
TITLE = "U.S., Japan defense chiefs affirm security pact Trump questioned"


def hash_of(data: bytes) -> str:
    """The content hash of a drop that must parse."""
    result = parse_drop(data)
    assert isinstance(result, ParsedArticle), result
    return result.content_hash


REFERENCE = hash_of(SAMPLE)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(SAMPLE_TEXT.encode("utf-16"), id="utf-16"),
        pytest.param(codecs.BOM_UTF16_BE + SAMPLE_TEXT.encode("utf-16-be"), id="utf-16-be"),
        pytest.param(SAMPLE_TEXT.encode("cp1252"), id="cp1252"),
        pytest.param(codecs.BOM_UTF8 + SAMPLE, id="utf-8-bom"),
        pytest.param(SAMPLE.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(SAMPLE.replace(b"\n", b"\r"), id="cr"),
        pytest.param(SAMPLE.replace(b"\n", b"\n\nADVERTISEMENT\n"), id="more-boilerplate"),
        pytest.param(SAMPLE.replace(b"\nAdvertisement", b""), id="no-boilerplate"),
        pytest.param(SAMPLE.replace(TITLE.encode(), b"Japan and US reaffirm alliance"), id="other-title"),
        pytest.param(SAMPLE.replace(b"date 2019-06-26", b"date 2019-06-27"), id="other-date"),
        pytest.param(SAMPLE.replace(b"bloomberg news", b"associated press"), id="other-credit"),
        pytest.param(SAMPLE.replace(b"bloomberg news", b""), id="no-credit"),
        pytest.param(SAMPLE.replace(b" date 2019-06-26 ", b""), id="no-header"),
        pytest.param(SAMPLE.replace(b". ", b".   ").replace(b", ", b",\t"), id="extra-blanks"),
        pytest.param(STRAIGHT_QUOTES.encode(), id="straight-quotes"),
        pytest.param(SAMPLE_TEXT.replace("‘‘", "“").replace("’’", "”").encode(), id="curly-double-quotes"),
        pytest.param(SAMPLE_TEXT.upper().replace("DATE 2019", "date 2019").encode(), id="upper-case"),
        pytest.param(SAMPLE_TEXT.encode("utf-8").decode("cp1252").encode("utf-8"), id="mojibake"),
        pytest.param(SAMPLE.replace(b"Trump ", b"Trump\xc2\xa0"), id="non-breaking-space"),
        pytest.param(SAMPLE.replace(b"The treaty, signed", b"\nThe treaty, signed"), id="split-paragraph"),
        pytest.param(SAMPLE.replace(b"Korea.\n", b"Korea. ", 1), id="joined-paragraphs"),
    ],
)
def test_same_body_same_hash(data: bytes) -> None:
    assert hash_of(data) == REFERENCE


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(SAMPLE.replace(b"sworn enemy", b"sworn foe"), id="changed-word"),
        pytest.param(SAMPLE.replace(b"60 years", b"70 years"), id="changed-number"),
        pytest.param(SAMPLE.replace(b"Pentagon officials were", b"Pentagon officials weren't"), id="added-word"),
        pytest.param(SAMPLE.replace(b"Korea.\n", b"Korea\n", 1), id="dropped-full-stop"),
        pytest.param(SAMPLE.replace(b"bloomberg news", b"The end of the story."), id="extra-paragraph"),
    ],
)
def test_changed_body_different_hash(data: bytes) -> None:
    assert hash_of(data) != REFERENCE


def test_hash_is_sha256_of_the_spec_key() -> None:
    paragraphs = ["He said\u00a0“Hi,”  then ‘bye’.", "‘‘It’s\tDONE’’"]
    key = 'he said "hi," then \'bye\'. "it\'s done"'
    assert hash_key(paragraphs) == key
    assert content_hash(paragraphs) == hashlib.sha256(key.encode("utf-8")).hexdigest()


def test_hash_is_lowercase_hex() -> None:
    assert len(REFERENCE) == 64
    assert REFERENCE.lower() == REFERENCE
    int(REFERENCE, 16)
