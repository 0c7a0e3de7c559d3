"""Listing articles for consumers (SPEC section 6, `GET /v1/articles`): filters that combine, full-text search,
and keyset paging on a total order, so following the cursors yields every match exactly once.

Orders (each ends in the id, so no two articles tie):
- `published`: newest first, undated last: (sort_date DESC, id DESC), where `sort_date` is `published_on` with
  undated articles as -infinity (a stored generated column), so the cursor is one row comparison that the
  (sort_date, id) indexes serve;
- `relevance`: (ts_rank DESC, id DESC). A rank depends on the article and the query alone, not on the rest of
  the corpus, so it does not move while others are stored.

A cursor holds the last row's key and the order it belongs to, base64url JSON: opaque to clients, and only
ever compared, never trusted for anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import REAL, ColumnElement, Date, Float, Select, cast, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlalchemy.orm import Session

from shared.export import records_by_id
from shared.models import Article, ArticleEntity, Entity
from shared.records import ArticleRecord
from shared.search import ts_config


class Sort(StrEnum):
    PUBLISHED = "published"
    RELEVANCE = "relevance"


class QueryError(ValueError):
    """A request the listing cannot answer as asked (the API's 400), in plain words."""


@dataclass(frozen=True)
class ArticleQuery:
    """The filters of `GET /v1/articles`; all given ones must hold (AND)."""

    q: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    source: str | None = None
    language: str | None = None
    country: str | None = None
    entity: str | None = None
    entity_type: str | None = None
    keyword: str | None = None
    cluster: int | None = None
    canonical: bool = False
    sort: Sort = Sort.PUBLISHED

    def check(self) -> None:
        if self.sort is Sort.RELEVANCE and not self.q:
            raise QueryError("sort=relevance ranks by the search: give q too")
        if self.entity_type and not self.entity:
            raise QueryError("entity_type narrows an entity: give entity too")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise QueryError("from is after to")

    def tsquery(self) -> ColumnElement[Any]:
        """`q` in web-search syntax ("a phrase", or, -word), in the configuration of the language asked for
        (English without one): websearch_to_tsquery never raises on its input."""
        config = ts_config(self.language) if self.language else ts_config(None)
        return func.websearch_to_tsquery(cast(config, REGCONFIG), self.q)


@dataclass(frozen=True)
class ListCursor:
    sort: Sort
    key: float | date | None  # rank, or published_on (None: undated)
    id: int

    def encode(self) -> str:
        key = self.key.isoformat() if isinstance(self.key, date) else self.key
        raw = json.dumps({"s": self.sort.value, "k": key, "i": self.id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, sort: Sort) -> ListCursor:
        bad = QueryError("not a cursor of this listing: pass a next_cursor as it was given, with the same sort")
        try:
            raw = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            found, key, article_id = Sort(raw["s"]), raw["k"], raw["i"]
        except (ValueError, TypeError, KeyError, binascii.Error) as e:
            raise bad from e
        if found is not sort or not isinstance(article_id, int) or not 0 <= article_id < 2**63:
            raise bad
        if sort is Sort.RELEVANCE:
            if not isinstance(key, float | int) or isinstance(key, bool) or not -1e38 < key < 1e38:  # real's range
                raise bad
            return cls(sort, float(key), article_id)
        if key is None:
            return cls(sort, None, article_id)
        try:
            return cls(sort, date.fromisoformat(key), article_id)
        except (TypeError, ValueError) as e:
            raise bad from e


def entity_ids(session: Session, query: ArticleQuery) -> list[int] | None:
    """The ids of the entity asked for (one per type it has), or None without an entity filter. Resolved before
    the listing so that the planner sees constants: an entity in every tenth article is best found by walking
    the articles in order, a rare one through its mentions, and only the entity's own statistics tell which."""
    if not query.entity:
        return None
    found = select(Entity.id).where(Entity.name == query.entity)
    if query.entity_type:
        found = found.where(Entity.type == query.entity_type)
    return list(session.execute(found.order_by(Entity.id)).scalars())


def filtered(query: ArticleQuery, entities: list[int] | None = None) -> Select[Any]:
    """The articles matching every filter given, each filter served by an index (`entities`: entity_ids())."""
    a = Article
    stmt = select(a.id)
    if query.q:
        stmt = stmt.where(a.search_vector.op("@@")(query.tsquery()))  # GIN
    if query.date_from:
        stmt = stmt.where(a.sort_date >= query.date_from)
    if query.date_to:  # undated articles sort as -infinity: not before any date
        stmt = stmt.where(a.sort_date <= query.date_to, a.published_on.is_not(None))
    if query.source:
        stmt = stmt.where(a.source == query.source)
    if query.language:
        stmt = stmt.where(a.language == query.language)
    if query.country:
        stmt = stmt.where(a.countries.contains([query.country.upper()]))  # GIN
    if query.keyword:
        stmt = stmt.where(a.keywords.contains([query.keyword]))  # GIN
    if entities is not None:
        stmt = stmt.where(select(ArticleEntity.article_id).where(
            ArticleEntity.article_id == a.id, ArticleEntity.entity_id.in_(entities)).exists())
    if query.cluster is not None:  # a cluster's id, or any member's: its current cluster
        of_member = select(a.cluster_id).where(a.id == query.cluster).scalar_subquery()
        stmt = stmt.where(a.cluster_id == of_member)
    if query.canonical:
        stmt = stmt.where(a.is_canonical.is_(True))
    return stmt


def page_statement(query: ArticleQuery, after: ListCursor | None, limit: int, entities: list[int] | None = None
                   ) -> Select[Any]:
    """The articles of one page (and one more, to tell whether another page follows), each with its sort key."""
    stmt = filtered(query, entities)
    if query.sort is Sort.RELEVANCE:
        rank = func.ts_rank(Article.search_vector, query.tsquery())
        stmt = stmt.add_columns(rank.label("rank")).order_by(rank.desc(), Article.id.desc())
        if after is not None:
            # ts_rank is a real; the key came back as its shortest decimal form, which as a double is not the
            # real's value: compared as a real again, or the page's last row sorts on the wrong side of it.
            stmt = stmt.where(tuple_(rank, Article.id) < tuple_(cast(literal(after.key, Float), REAL),
                                                                 literal(after.id)))
    else:
        stmt = stmt.add_columns(Article.published_on.label("key")).order_by(
            Article.sort_date.desc(), Article.id.desc())
        if after is not None:
            key = literal(after.key) if after.key is not None else literal("-infinity")
            stmt = stmt.where(tuple_(Article.sort_date, Article.id) < tuple_(cast(key, Date), literal(after.id)))
    return stmt.limit(limit + 1)


def list_articles(session: Session, query: ArticleQuery, *, limit: int, cursor: str | None
                  ) -> tuple[list[ArticleRecord], str | None]:
    """One page of matches after the cursor, and the cursor of the next page (None after the last)."""
    query.check()
    after = ListCursor.decode(cursor, query.sort) if cursor else None
    # On the session's connection, not the ORM session: the statement returns plain columns, and the ORM's result
    # set-up was a tenth of the api's CPU for a list page.
    rows = session.connection().execute(page_statement(query, after, limit, entity_ids(session, query))).all()
    page = rows[:limit]
    records = records_by_id(session, [row[0] for row in page])
    if len(rows) <= limit:
        return records, None
    last = page[-1]
    return records, ListCursor(query.sort, last[1], last[0]).encode()
