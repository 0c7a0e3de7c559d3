"""Stories (SPEC section 6, `GET /v1/clusters/{id}`): a cluster of near-duplicate articles, found from any
member's id, with its canonical article, members and their similarity to it, dates and sources."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Article
from shared.similarity import jaccard, shingles_from_bytes


class StoryMember(BaseModel):
    id: int
    title: str
    source: str | None
    published_on: date | None
    similarity: float | None = Field(description="Jaccard similarity of its word 5-shingles to the canonical "
                                     "article's (1 for the canonical itself); null when either has no sketch.")


class Story(BaseModel):
    id: int = Field(description="The cluster's id: its canonical article's id.")
    canonical: StoryMember
    members: list[StoryMember] = Field(description="Every article of the story: the canonical first, then "
                                       "newest first (undated last), then by id.")
    first_published_on: date | None
    last_published_on: date | None
    sources: list[str] = Field(description="Distinct sources of its articles, sorted.")


def _similarity(canonical: bytes | None, other: bytes | None) -> float | None:
    if canonical is None or other is None:
        return None
    return round(jaccard(shingles_from_bytes(canonical), shingles_from_bytes(other)), 4)


def story_of(session: Session, article_id: int) -> Story | None:
    """The story the article belongs to now (None for an unknown id)."""
    cluster_id = session.execute(select(Article.cluster_id).where(Article.id == article_id)).scalar()
    if cluster_id is None:
        return None
    rows = session.execute(
        select(Article.id, Article.title, Article.source, Article.published_on, Article.is_canonical,
               Article.shingles)
        .where(Article.cluster_id == cluster_id).order_by(Article.sort_date.desc(), Article.id)
    ).all()
    canonical = next((r for r in rows if r.is_canonical), rows[0])
    members = [StoryMember(id=r.id, title=r.title, source=r.source, published_on=r.published_on,
                           similarity=1.0 if r.id == canonical.id else _similarity(canonical.shingles, r.shingles))
               for r in [canonical, *(r for r in rows if r.id != canonical.id)]]
    dates = [r.published_on for r in rows if r.published_on is not None]
    return Story(id=cluster_id, canonical=members[0], members=members,
                 first_published_on=min(dates, default=None), last_published_on=max(dates, default=None),
                 sources=sorted({r.source for r in rows if r.source}))
