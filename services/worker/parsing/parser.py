"""parse_drop: one drop's bytes to a ParsedArticle, or a Rejection saying why not."""

from __future__ import annotations

import re
from datetime import date
from typing import NamedTuple

from services.worker.parsing.boilerplate import is_boilerplate
from services.worker.parsing.decode import decode_drop
from services.worker.parsing.sources import display_source, is_credit_line
from shared.records import ArticleWarning, DropReason, ParsedArticle, Rejection
from shared.settings import PipelineSettings
from shared.text import content_hash, normalise_visible_line, remove_invisible, split_lines

DEFAULT_MAX_BYTES = PipelineSettings().max_bytes  # stated once, in the settings

# Matched against a normalised line, so the blanks are single spaces and the ends stripped.
_HEADER_RE = re.compile(r"date (?P<token>\S+) (?P<title>.+)", re.IGNORECASE)
# date.fromisoformat alone would also take "20190626" and week dates; the spec says YYYY-MM-DD.
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

_WEEKDAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?\.?"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
# "Friday, January 4, 2019" or "4 January 2019", weekday optional, alone on its line. Found here only: the
# enricher gets it with the article (its summary starts after it).
_DATELINE_RE = re.compile(
    rf"(?:{_WEEKDAY},? )?(?:{_MONTH} \d{{1,2}},? \d{{4}}|\d{{1,2}} {_MONTH},? \d{{4}})",
    re.IGNORECASE,
)


class Header(NamedTuple):
    """What the first line says: the title, the date if any, and what was wrong with it."""

    title: str
    published_on: date | None
    warning: ArticleWarning | None


def parse_drop(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedArticle | Rejection:
    """Parse one drop's bytes into an article, or say in plain words why they are not one."""
    if len(data) > max_bytes:
        detail = f"file is {len(data):,} bytes, over the {max_bytes:,}-byte limit"
        return Rejection(reason=DropReason.TOO_LARGE, detail=detail)
    decoded = decode_drop(data)
    if isinstance(decoded, Rejection):
        return decoded
    lines = text_lines(decoded.text)
    if isinstance(lines, Rejection):
        return lines
    header = parse_header(lines[0])
    body = lines[1:]
    credit = body.pop() if body and is_credit_line(body[-1]) else None
    if not body:
        follows = "the header" if header.warning is not ArticleWarning.HEADER_MISSING else "the title line"
        return Rejection(reason=DropReason.NO_BODY, detail=f"no paragraph follows {follows}")
    return ParsedArticle(
        title=header.title,
        published_on=header.published_on,
        source=display_source(credit) if credit else None,
        source_raw=credit,
        dateline=body[0] if _DATELINE_RE.fullmatch(body[0].rstrip(".")) else None,
        paragraphs=body,
        warnings=[header.warning] if header.warning else [],
        encoding=decoded.encoding,
        content_hash=content_hash(body),
    )


def text_lines(text: str) -> list[str] | Rejection:
    """The normalised, non-empty, non-boilerplate lines of text, or an `empty` rejection."""
    lines = [line for line in map(normalise_visible_line, split_lines(remove_invisible(text))) if line]
    if not lines:
        return Rejection(reason=DropReason.EMPTY, detail="file is empty or holds only blank space")
    kept = [line for line in lines if not is_boilerplate(line)]
    if not kept:
        detail = "file holds only page furniture such as “Advertisement”, no article text"
        return Rejection(reason=DropReason.EMPTY, detail=detail)
    return kept


def parse_header(line: str) -> Header:
    """Read a `date YYYY-MM-DD title` header; anything else makes the whole line the title."""
    match = _HEADER_RE.fullmatch(line)
    if match is None:
        return Header(title=line, published_on=None, warning=ArticleWarning.HEADER_MISSING)
    published_on = _parse_iso_date(match["token"])
    warning = None if published_on else ArticleWarning.DATE_INVALID
    return Header(title=match["title"], published_on=published_on, warning=warning)


def _parse_iso_date(token: str) -> date | None:
    """The date a YYYY-MM-DD token names, or None when it is malformed or impossible."""
    if not _ISO_DATE_RE.fullmatch(token):
        return None
    try:
        return date.fromisoformat(token)
    except ValueError:
        return None
