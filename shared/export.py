"""The consumer records of SPEC section 6, read from PostgreSQL in pages (constant memory)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared.db import int_array
from shared.models import Article, Drop
from shared.records import ArticleRecord, DropRecord

PAGE_SIZE = 500


# The whole record in one statement, whatever the page's size: its drops, cluster and entities as JSON arrays
# built by PostgreSQL next to the article's columns (each through its index), in the order of the ids given.
RECORDS = text("""
SELECT a.id, a.content_hash, a.title, a.published_on, a.source, a.source_raw, a.paragraphs, a.body, a.warnings,
       a.language, a.word_count, a.reading_time_min, a.summary, a.keywords, a.countries, a.tone, a.cluster_id,
       a.is_canonical, a.pipeline_version, a.enrichment_version, a.enrichment_status, a.enrichment_error,
       CASE WHEN a.enrichment_version IS NOT NULL THEN
           (SELECT coalesce(json_agg(json_build_object('text', e.name, 'type', e.type, 'count', ae.count)
                                     ORDER BY ae.count DESC, e.name), '[]')
            FROM article_entities ae JOIN entities e ON e.id = ae.entity_id WHERE ae.article_id = a.id)
       END AS entities,
       coalesce((SELECT json_agg(m.id ORDER BY m.id) FROM articles m WHERE m.cluster_id = a.cluster_id),
                json_build_array(a.id)) AS cluster,
       (SELECT coalesce(json_agg(json_build_object('path', d.path, 'sha256', d.sha256, 'discovered_at',
                                                   d.discovered_at, 'host', d.host, 'parsed_by', d.parsed_by)
                                 ORDER BY d.discovered_at, d.id), '[]')
        FROM drops d WHERE d.article_id = a.id) AS drops
FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS u(id, n) JOIN articles a ON a.id = u.id
ORDER BY u.n
""")


def records_by_id(session: Session, article_ids: list[int]) -> list[ArticleRecord]:
    """The consumer records of these articles, in this order (an unknown id is left out)."""
    if not article_ids:
        return []
    rows = session.execute(RECORDS, {"ids": int_array(article_ids)}).mappings()
    return [ArticleRecord.model_validate(dict(row)) for row in rows]


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
