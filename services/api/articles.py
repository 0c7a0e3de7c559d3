"""`GET /v1/articles` (search, filters, keyset pages), `GET /v1/articles/{id}` (ETag, 304) and
`GET /v1/clusters/{id}`: SPEC section 6."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from services.api.access import runtime_of
from services.api.deps import ERRORS, MAX_ID, TEXT, Problem, bearer
from shared.export import record_of
from shared.listing import ArticleQuery, QueryError, Sort, list_articles
from shared.records import ArticleRecord
from shared.runtime import Runtime
from shared.stories import Story, StoryMember, story_of

router = APIRouter(tags=["articles"], responses=ERRORS, dependencies=[Depends(bearer)])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such article"}}


class ArticlePage(BaseModel):
    items: list[ArticleRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null after the last.")


class ArticleDetail(ArticleRecord):
    cluster_members: list[StoryMember] = Field(description="The articles of its story (see /v1/clusters/{id}).")


Text = Annotated[str | None, Query(max_length=200, pattern=TEXT)]


@router.get("/articles", response_model=ArticlePage)
def articles(
    runtime: Annotated[Runtime, Depends(runtime_of)],
    q: Annotated[str | None, Query(max_length=400, pattern=TEXT, description=(
        'Full-text search, web-search syntax: words, "a phrase", `or`, -word. Stemmed in the `language` '
        "asked for (English without one).")), ] = None,
    date_from: Annotated[date | None, Query(alias="from", description="Published on or after (inclusive)")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Published on or before (inclusive)")] = None,
    source: Annotated[str | None, Query(max_length=200, pattern=TEXT, description="e.g. Reuters")] = None,
    language: Annotated[str | None, Query(max_length=8, pattern=TEXT, description="ISO 639-1, e.g. en")] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166 alpha-2")] = None,
    entity: Annotated[str | None, Query(max_length=200, pattern=TEXT, description="An entity's name, exactly")
                      ] = None,
    entity_type: Annotated[str | None, Query(max_length=16, pattern=TEXT, description=(
        "person, organization, place, nationality or event (with entity)"))] = None,
    keyword: Text = None,
    cluster: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A story: its id or any member's")] = None,
    canonical: Annotated[bool, Query(description="One article per story: its canonical")] = False,
    sort: Annotated[Sort, Query(description="published: newest first, undated last; relevance: with q")
                    ] = Sort.PUBLISHED,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page")] = None,
) -> Response:
    """Articles matching every filter given, a page at a time; following `next_cursor` yields every match
    exactly once (keyset paging on a total order: no match is lost or repeated, also among equal dates)."""
    query = ArticleQuery(q=q, date_from=date_from, date_to=date_to, source=source, language=language,
                         country=country, entity=entity, entity_type=entity_type, keyword=keyword,
                         cluster=cluster, canonical=canonical, sort=sort)
    try:
        with runtime.read_sessions() as session:
            page = list_articles(session, query, limit=limit, cursor=cursor)
    except QueryError as e:
        raise HTTPException(400, str(e)) from e
    # An ArticlePage, written here around the records' JSON as PostgreSQL built it (shared.export): validating
    # the records and writing them again cost an eighth of the route's CPU (the schema tests check the shape).
    return Response(f'{{"items":{page.records_json},"next_cursor":{json.dumps(page.next_cursor)}}}',
                    media_type="application/json")


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match holds this ETag (weak comparison, as RFC 9110 asks for this header), or is `*`."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@router.get("/articles/{article_id}", response_model=ArticleDetail, responses={
    **NOT_FOUND, 304: {"description": "Not modified: the ETag given in If-None-Match is current"}})
def article(article_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request,
            runtime: Annotated[Runtime, Depends(runtime_of)]) -> Response:
    """The full record, with its entities, drops and cluster members. `ETag` names this exact content:
    send it back in `If-None-Match` and an unchanged article answers 304 with no body."""
    with runtime.read_sessions() as session:
        record = record_of(session, article_id)
        story = story_of(session, article_id) if record is not None else None
    if record is None or story is None:
        raise HTTPException(404, f"no article {article_id}")
    body = ArticleDetail(**record.model_dump(), cluster_members=story.members).model_dump_json()
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/clusters/{cluster_id}", tags=["stories"], responses={
    404: {"model": Problem, "description": "No such article or cluster"}})
def cluster(cluster_id: Annotated[int, Path(ge=1, le=MAX_ID, description="A cluster's id or any member's")],
            runtime: Annotated[Runtime, Depends(runtime_of)]) -> Story:
    """The story: its canonical article, its members with their similarity to the canonical, first and last
    dates, sources. Any member's id finds its current cluster."""
    with runtime.read_sessions() as session:
        story = story_of(session, cluster_id)
    if story is None:
        raise HTTPException(404, f"no article or cluster {cluster_id}")
    return story
