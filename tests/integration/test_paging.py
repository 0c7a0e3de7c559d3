"""Keyset paging never loses or repeats a match (SPEC section 6): a property test over random corpora with many
equal dates, random filters and page sizes, with and without articles being stored during the walk."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared import listing
from shared.listing import ArticleQuery, Sort, list_articles
from shared.search import ts_config
from tests.corpora import COUNTRIES, ENTITIES, SOURCES, WORDS, random_spec, store_and_enrich
from tests.support import truncate_all

pytestmark = pytest.mark.integration

DATES = (date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3), None)  # few dates: many ties
EVERYTHING = 100_000

words = st.sampled_from(WORDS[:20])
queries = st.one_of(words, st.builds("{} or {}".format, words, words), st.builds("{} -{}".format, words, words),
                    st.builds('"{} {}"'.format, words, words))


FILTERS = ("q", "date_from", "date_to", "source", "language", "country", "keyword", "entity", "cluster",
           "canonical")


@st.composite
def article_queries(draw: st.DrawFn) -> ArticleQuery:
    """No filter, or up to three of them (more match next to nothing in a small corpus)."""
    chosen = draw(st.lists(st.sampled_from(FILTERS), max_size=3, unique=True))
    given = {
        "q": lambda: draw(queries), "date_from": lambda: draw(st.sampled_from(DATES[:3])),
        "date_to": lambda: draw(st.sampled_from(DATES[:3])), "source": lambda: draw(st.sampled_from(SOURCES)),
        "language": lambda: draw(st.sampled_from(("en", "fr"))), "country": lambda: draw(st.sampled_from(COUNTRIES)),
        "keyword": lambda: draw(st.sampled_from(WORDS[:12])), "entity": lambda: draw(st.sampled_from(ENTITIES)),
        "cluster": lambda: draw(st.integers(1, 40)), "canonical": lambda: True,
    }
    values = {name: given[name]() for name in chosen}
    if "entity" in values:
        kind, values["entity"] = values["entity"]
        if draw(st.booleans()):
            values["entity_type"] = kind
    if values.get("q") and draw(st.booleans()):
        values["sort"] = Sort.RELEVANCE
    return ArticleQuery(**values)


def walk(sessions: sessionmaker[Session], query: ArticleQuery, limit: int, between=lambda: None) -> list[int]:
    """Every page, following next_cursor; `between` runs before each page after the first."""
    seen: list[int] = []
    cursor = None
    while True:
        with sessions() as session:
            page = list_articles(session, query, limit=limit, cursor=cursor)
            total = session.execute(text("SELECT count(*) FROM articles")).scalar_one()
        seen += [r.id for r in page.records()]
        cursor = page.next_cursor
        assert len(seen) <= total, f"the walk goes round: {seen[-3 * limit:]} (cursor {cursor})"
        if cursor is None:
            return seen
        between()


def oracle(session: Session, query: ArticleQuery) -> list[int]:
    """The matches in the API's order, filtered here in Python (full-text matching aside)."""
    rows = session.execute(text(
        "SELECT id, published_on, source, language, countries, keywords, cluster_id, is_canonical FROM articles"
    )).all()
    mentions = set(session.execute(text(
        "SELECT ae.article_id, e.type, e.name FROM article_entities ae JOIN entities e ON e.id = ae.entity_id")))
    clusters = {r.id: r.cluster_id for r in rows}
    found = set(session.execute(text(
        "SELECT id FROM articles WHERE search_vector @@ websearch_to_tsquery(CAST(:c AS regconfig), :q)"),
        {"c": ts_config(query.language), "q": query.q}).scalars()) if query.q else None

    def matches(r) -> bool:
        return all([
            found is None or r.id in found,
            query.date_from is None or (r.published_on is not None and r.published_on >= query.date_from),
            query.date_to is None or (r.published_on is not None and r.published_on <= query.date_to),
            query.source is None or r.source == query.source,
            query.language is None or r.language == query.language,
            query.country is None or query.country in (r.countries or []),
            query.keyword is None or query.keyword in (r.keywords or []),
            query.entity is None or any(a == r.id and n == query.entity and query.entity_type in (None, t)
                                        for a, t, n in mentions),
            query.cluster is None or r.cluster_id == clusters.get(query.cluster),
            not query.canonical or r.is_canonical,
        ])

    hits = [r for r in rows if matches(r)]
    return [r.id for r in sorted(hits, key=lambda r: (r.published_on or date.min, r.id), reverse=True)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 60), query=article_queries(), limit=st.integers(1, 7),
       arrivals=st.lists(st.integers(0, 6), max_size=12), window=st.sampled_from((listing.PHRASE_WINDOW, 1, 4, 15)))
def test_pages_yield_every_match_exactly_once(sessions, seed: int, size: int, query: ArticleQuery, limit: int,
                                             arrivals: list[int], window: int) -> None:
    """`window`: phrase searches look through this many articles in order first (small ones, so that a small
    corpus takes both ways: a page found in the window, and the whole search when it holds too few)."""
    with patch.object(listing, "PHRASE_WINDOW", window):
        pages_yield_every_match_exactly_once(sessions, seed, size, query, limit, arrivals)


def pages_yield_every_match_exactly_once(sessions, seed: int, size: int, query: ArticleQuery, limit: int,
                                         arrivals: list[int]) -> None:
    if (query.date_from or date.min) > (query.date_to or date.max):
        query = replace(query, date_to=None)  # a 400 (tested with the API)
    truncate_all(sessions)
    rng = random.Random(seed)
    store_and_enrich(sessions, [random_spec(rng, DATES) for _ in range(size)], "corpus")
    with sessions() as session:
        full = list_articles(session, query, limit=EVERYTHING, cursor=None)
        expected = oracle(session, query)
    assert full.next_cursor is None
    full_ids = [r.id for r in full.records()]
    if query.sort is Sort.PUBLISHED:
        assert full_ids == expected
    else:
        assert sorted(full_ids) == sorted(expected)

    assert walk(sessions, query, limit) == full_ids  # concatenated pages are the full result, exactly

    # Walk again while articles are stored between pages (dates from the same few: they land on both sides
    # of the cursor). Stored articles never change the sort key or the match of those already there.
    batches = iter(arrivals)

    def store_some() -> None:
        if (count := next(batches, 0)) > 0:
            store_and_enrich(sessions, [random_spec(rng, DATES) for _ in range(count)], f"new{rng.random()}")

    during = walk(sessions, query, limit, between=store_some)
    assert len(during) == len(set(during)), "an article was served twice"
    assert set(full_ids) <= set(during), "an article that matched all along was skipped"
