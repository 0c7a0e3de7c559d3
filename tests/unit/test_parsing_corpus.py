"""The 295 Wikinews drops in tests/data/wikinews parse as their index says."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from services.worker.parsing import parse_drop
from shared.records import ParsedArticle

CORPUS = Path(__file__).parents[2] / "tests" / "data" / "wikinews"
INDEX = [json.loads(line) for line in (CORPUS / "index.jsonl").read_text("utf-8").splitlines() if line.strip()]
# How Wikinews writes the dateline paragraph: "Friday, January 4, 2019".
WIKINEWS_DATELINE = re.compile(r"(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, [A-Z][a-z]+ \d{1,2}, \d{4}")


def parsed(data: bytes) -> ParsedArticle:
    """Parse data and insist that it became an article."""
    result = parse_drop(data)
    assert isinstance(result, ParsedArticle), result
    return result


def test_index_covers_the_corpus() -> None:
    assert len(INDEX) == 295
    assert {row["file"] for row in INDEX} == {path.name for path in CORPUS.glob("*.txt")}


@pytest.mark.parametrize("row", INDEX, ids=[row["file"] for row in INDEX])
def test_wikinews_drop(row: dict[str, object]) -> None:
    data = (CORPUS / str(row["file"])).read_bytes()
    article = parsed(data)
    assert article.title == row["title"]
    assert article.published_on == date.fromisoformat(str(row["published_on"]))
    assert len(article.paragraphs) == row["paragraphs"]
    assert article.source == row["source"] == "Wikinews"
    assert article.source_raw == "wikinews"
    assert article.warnings == []
    # A Windows copy of the same drop, with page furniture, is the same article.
    variant = data.decode("utf-8").replace("\n", "\r\nAdvertisement\r\n").encode("utf-16")
    assert parsed(variant).model_dump(exclude={"encoding"}) == article.model_dump(exclude={"encoding"})


def test_wikinews_datelines() -> None:
    for row in INDEX:
        data = (CORPUS / str(row["file"])).read_bytes()
        second_line = data.decode("utf-8").splitlines()[1]
        expected = second_line if WIKINEWS_DATELINE.fullmatch(second_line) else None
        assert parsed(data).dateline == expected, row["file"]


def test_wikinews_content_hashes_are_distinct() -> None:
    hashes = {parsed((CORPUS / str(row["file"])).read_bytes()).content_hash for row in INDEX}
    assert len(hashes) == len(INDEX)
