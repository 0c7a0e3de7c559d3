"""The consumer records of SPEC section 6, read from PostgreSQL in pages (constant memory)."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import TypeAdapter
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared.db import int_array
from shared.models import Article, Drop
from shared.records import ArticleRecord, DropRecord

PAGE_SIZE = 500


# The whole page of records in one row of one statement, whatever its size: each record a JSON object that
# PostgreSQL builds next to the article's columns (its drops, cluster and entities as JSON arrays, each through its
# index), in the order of the ids given. Fetched as one text and validated by pydantic's own JSON parser: rows of
# columns cost more to fetch and decode in Python (psycopg's JSON loader, a dict per row) than the whole API route
# did besides (bench_api, 20 records a page).
RECORDS = text("""
SELECT coalesce(json_agg(json_build_object(
           'id', a.id, 'content_hash', a.content_hash, 'title', a.title, 'published_on', a.published_on,
           'source', a.source, 'source_raw', a.source_raw, 'paragraphs', a.paragraphs, 'body', a.body,
           'warnings', a.warnings, 'language', a.language, 'word_count', a.word_count,
           'reading_time_min', a.reading_time_min, 'summary', a.summary, 'keywords', a.keywords,
           'countries', a.countries, 'tone', a.tone, 'cluster_id', a.cluster_id, 'is_canonical', a.is_canonical,
           'pipeline_version', a.pipeline_version, 'enrichment_version', a.enrichment_version,
           'enrichment_status', a.enrichment_status, 'enrichment_error', a.enrichment_error,
           'entities', CASE WHEN a.enrichment_version IS NOT NULL THEN
               (SELECT coalesce(json_agg(json_build_object('text', e.name, 'type', e.type, 'count', ae.count)
                                         ORDER BY ae.count DESC, e.name), '[]')
                FROM article_entities ae JOIN entities e ON e.id = ae.entity_id WHERE ae.article_id = a.id)
           END,
           'cluster', coalesce((SELECT json_agg(m.id ORDER BY m.id) FROM articles m WHERE m.cluster_id = a.cluster_id),
                               json_build_array(a.id)),
           'drops', (SELECT coalesce(json_agg(json_build_object('path', d.path, 'sha256', d.sha256, 'discovered_at',
                                                                d.discovered_at, 'host', d.host, 'parsed_by',
                                                                d.parsed_by) ORDER BY d.discovered_at, d.id), '[]')
                     FROM drops d WHERE d.article_id = a.id))
       ORDER BY u.n), '[]')::text
FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS u(id, n) JOIN articles a ON a.id = u.id
""")
RECORD_LIST = TypeAdapter(list[ArticleRecord])


def records_json(session: Session, article_ids: list[int]) -> str:
    """The consumer records of these articles, in this order (an unknown id is left out): the JSON array as
    PostgreSQL built it, which the api sends as it is (validating it and writing it again was an eighth of the
    api's CPU for a list page)."""
    if not article_ids:
        return "[]"
    return session.connection().execute(RECORDS, {"ids": int_array(article_ids)}).scalar_one()


def records_by_id(session: Session, article_ids: list[int]) -> list[ArticleRecord]:
    """The consumer records of these articles, in this order (an unknown id is left out)."""
    return RECORD_LIST.validate_json(records_json(session, article_ids))


def record_of(session: Session, article_id: int) -> ArticleRecord | None:
    found = records_by_id(session, [article_id])
    return found[0] if found else None


def iter_articles(session: Session) -> Iterator[ArticleRecord]:
    last_id = 0
    while True:
        page = list(session.execute(
            select(Article.id).where(Article.id > last_id).order_by(Article.id).limit(PAGE_SIZE)).scalars())
        if not page:
            return
        yield from records_by_id(session, page)
        last_id = page[-1]


def drop_record(drop: Drop) -> DropRecord:
    return DropRecord(
        id=drop.id, path=drop.path, sha256=drop.sha256, size=drop.size, status=drop.status,
        reason=drop.reason, detail=drop.detail, article_id=drop.article_id,
        discovered_at=drop.discovered_at, finished_at=drop.finished_at, host=drop.host,
        parsed_by=drop.parsed_by,
    )


def iter_drops(session: Session) -> Iterator[DropRecord]:
    last_id = 0
    while True:
        page = list(session.execute(
            select(Drop).where(Drop.id > last_id).order_by(Drop.id).limit(PAGE_SIZE)
        ).scalars())
        if not page:
            return
        yield from (drop_record(d) for d in page)
        last_id = page[-1].id
        session.expunge_all()
