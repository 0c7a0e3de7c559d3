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
from sqlalchemy.orm import InstrumentedAttribute, Session

from shared.export import RECORD_LIST, records_json
from shared.models import Article, ArticleEntity, ArticleKeyword, Entity
from shared.records import ArticleRecord
from shared.search import ts_config

PHRASE_WINDOW = 2000  # articles a phrase search looks through in order before searching them all (page_rows)


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
    # Keyword and entity are joined, so that the published order can walk their rows (published_order): one row
    # per (article, keyword) and one link per (article, entity), so the joins repeat no article.
    if query.keyword:
        k = ArticleKeyword
        stmt = stmt.join(k, (k.article_id == a.id) & (k.keyword == query.keyword))
    if entities is not None and len(entities) == 1:
        e = ArticleEntity
        stmt = stmt.join(e, (e.article_id == a.id) & (e.entity_id == entities[0]))
    elif entities is not None:  # a name of several types (or none): an article may mention more than one
        stmt = stmt.where(select(ArticleEntity.article_id).where(
            ArticleEntity.article_id == a.id, ArticleEntity.entity_id.in_(entities)).exists())
    if query.cluster is not None:  # a cluster's id, or any member's: its current cluster
        of_member = select(a.cluster_id).where(a.id == query.cluster).scalar_subquery()
        stmt = stmt.where(a.cluster_id == of_member)
    if query.canonical:
        stmt = stmt.where(a.is_canonical.is_(True))
    return stmt


def published_order(query: ArticleQuery, entities: list[int] | None
                    ) -> tuple[InstrumentedAttribute[date], InstrumentedAttribute[int]]:
    """The (sort_date, id) of the published order, taken from the table that a filter can walk in that order: the
    keyword's rows, else the entity's links, else the article itself. They hold the same values (`article_keywords`
    and the links carry the article's `sort_date`), but only the walked table's index serves the order and the
    cursor's comparison: a page is then its next few entries, however many articles match."""
    if query.keyword:
        return ArticleKeyword.sort_date, ArticleKeyword.article_id
    if entities is not None and len(entities) == 1:
        return ArticleEntity.sort_date, ArticleEntity.article_id
    return Article.sort_date, Article.id


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
        sort_date, article_id = published_order(query, entities)
        stmt = stmt.add_columns(Article.published_on.label("key")).order_by(sort_date.desc(), article_id.desc())
        if after is not None:
            key = literal(after.key) if after.key is not None else literal("-infinity")
            stmt = stmt.where(tuple_(sort_date, article_id) < tuple_(cast(key, Date), literal(after.id)))
    return stmt.limit(limit + 1)


def window_floor(session: Session, after: ListCursor | None, rows: int) -> tuple[date, int] | None:
    """The key of the `rows`-th article after the cursor in the published order, all articles counted (None if
    fewer remain): an index-only walk of `rows` entries of (sort_date, id)."""
    a = Article
    stmt = select(a.sort_date, a.id).order_by(a.sort_date.desc(), a.id.desc()).offset(rows - 1).limit(1)
    if after is not None:
        key = literal(after.key) if after.key is not None else literal("-infinity")
        stmt = stmt.where(tuple_(a.sort_date, a.id) < tuple_(cast(key, Date), literal(after.id)))
    found = session.connection().execute(stmt).first()
    return (found[0], found[1]) if found is not None else None


def page_rows(session: Session, query: ArticleQuery, after: ListCursor | None, limit: int) -> list[Any]:
    """The page's rows (ids and sort keys, one more than `limit` when another page follows).

    A phrase ("prime minister") in the newest-first order is first looked for among the next PHRASE_WINDOW
    articles in that order only. PostgreSQL estimates a phrase as if its words were independent (the product of
    their frequencies: 0.3 % for a phrase in 4 % of the articles, whatever the statistics target), so it reads
    every match through the GIN index, fetching and rechecking each row, and sorts them (70 ms at 4,000 matches),
    where walking the order stops after a few hundred rows. Exact all the same: the first matches in order among
    the first N articles in order are the first matches overall, when there are enough of them for the page; when
    there are not, the whole search runs as before."""
    entities = entity_ids(session, query)
    # On the session's connection, not the ORM session: the statement returns plain columns, and the ORM's result
    # set-up was a tenth of the api's CPU for a list page.
    run = session.connection().execute
    windowed = phrase_window_statement(session, query, after, limit, entities)
    if windowed is not None:
        rows = run(windowed).all()
        if len(rows) > limit:
            return list(rows)
    return list(run(page_statement(query, after, limit, entities)).all())


def phrase_window_statement(session: Session, query: ArticleQuery, after: ListCursor | None, limit: int,
                            entities: list[int] | None) -> Select[Any] | None:
    """The page's statement restricted to the next PHRASE_WINDOW articles in order, for a phrase search in the
    newest-first order (page_rows says why); None for other listings, or when fewer articles remain."""
    if query.sort is not Sort.PUBLISHED or not query.q or '"' not in query.q:
        return None
    floor = window_floor(session, after, PHRASE_WINDOW)
    if floor is None:
        return None
    return page_statement(query, after, limit, entities).where(
        tuple_(Article.sort_date, Article.id) >= tuple_(cast(literal(floor[0]), Date), literal(floor[1])))


@dataclass(frozen=True)
class Page:
    """One page of matches: their records as one JSON array, built by PostgreSQL (shared.export.records_json), and
    the cursor of the next page (None after the last)."""

    records_json: str
    next_cursor: str | None

    def records(self) -> list[ArticleRecord]:
        return RECORD_LIST.validate_json(self.records_json)


def list_articles(session: Session, query: ArticleQuery, *, limit: int, cursor: str | None) -> Page:
    """One page of matches after the cursor."""
    query.check()
    after = ListCursor.decode(cursor, query.sort) if cursor else None
    rows = page_rows(session, query, after, limit)
    page = rows[:limit]
    found = records_json(session, [row[0] for row in page])
    if len(rows) <= limit:
        return Page(found, None)
    last = page[-1]
    return Page(found, ListCursor(query.sort, last[1], last[0]).encode())
