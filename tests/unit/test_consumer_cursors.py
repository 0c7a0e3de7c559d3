"""Cursors of the article listing and the change feed: opaque, round-trip exactly, and anything else is a client
error (400), never a server error; the text search configuration per language."""

from __future__ import annotations

import base64
import contextlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.changes import CursorError, FeedCursor
from shared.listing import ListCursor, QueryError, Sort
from shared.search import CONFIG_OF_LANGUAGE_SQL, ts_config
from shared.stats import default_window


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_feed_cursors_round_trip(xid: int, position: int) -> None:
    assert FeedCursor.decode(FeedCursor(xid, position).encode()) == FeedCursor(xid, position)


@given(st.text(max_size=100))
def test_any_other_feed_cursor_is_refused_cleanly(value: str) -> None:
    with contextlib.suppress(CursorError):
        FeedCursor.decode(value)


@given(st.one_of(st.none(), st.dates()), st.integers(1, 2**63 - 1))
def test_list_cursors_round_trip(key: date | None, article_id: int) -> None:
    cursor = ListCursor(Sort.PUBLISHED, key, article_id)
    assert ListCursor.decode(cursor.encode(), Sort.PUBLISHED) == cursor


@given(st.floats(min_value=0, max_value=1e6, width=32), st.integers(1, 2**63 - 1))  # ts_rank: small, >= 0
def test_relevance_cursors_keep_the_rank_exactly(rank: float, article_id: int) -> None:
    assert ListCursor.decode(ListCursor(Sort.RELEVANCE, rank, article_id).encode(), Sort.RELEVANCE).key == rank


@given(st.text(max_size=200))
def test_any_other_list_cursor_is_refused_cleanly(value: str) -> None:
    for sort in Sort:
        with contextlib.suppress(QueryError):
            ListCursor.decode(value, sort)


@pytest.mark.parametrize("raw", ['{"s":"published","k":5,"i":1}', '{"s":"relevance","k":"x","i":1}',
                                 '{"s":"published","k":null,"i":-1}', '{"s":"published","k":null}', "[1,2]",
                                 '{"s":"relevance","k":true,"i":1}', '{"s":"published","k":null,"i":1e99}',
                                 '{"s":"relevance","k":1e300,"i":1}', '{"s":"relevance","k":1' + "0" * 400 + ',"i":1}'])
def test_forged_list_cursors_are_refused(raw: str) -> None:
    value = base64.urlsafe_b64encode(raw.encode()).decode()
    with pytest.raises(QueryError):
        ListCursor.decode(value, Sort.PUBLISHED if '"published"' in raw else Sort.RELEVANCE)


def test_a_cursor_of_one_order_is_refused_by_the_other() -> None:
    with pytest.raises(QueryError):
        ListCursor.decode(ListCursor(Sort.PUBLISHED, None, 3).encode(), Sort.RELEVANCE)


def test_text_search_configurations() -> None:
    assert (ts_config(None), ts_config("en"), ts_config("fr"), ts_config("pl")) == (
        "english", "english", "french", "simple")
    assert "WHEN 'de' THEN 'german'" in CONFIG_OF_LANGUAGE_SQL


def test_default_windows_stay_in_range() -> None:
    assert default_window(None, None, date(2024, 3, 31)) == (date(2024, 3, 2), date(2024, 3, 31))
    assert default_window(None, date.min, date(2024, 1, 1)) == (date.min, date.min)
    assert default_window(date.max, None, date(2024, 1, 1)) == (date.max, date.max)
