"""The consumer records of SPEC section 6, read from PostgreSQL in pages (constant memory)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import BigInteger, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, defer

from shared.models import Article, ArticleEntity, Drop, Entity
from shared.records import ArticleRecord, DropLineage, DropRecord, EntityMention

PAGE_SIZE = 500


def _any(values) -> object:
    """`= ANY(array)`: one statement text whatever the count (an IN list is a new text for each length)."""
    return any_(bindparam(None, sorted(values), type_=ARRAY(BigInteger)))


def _lineage(session: Session, article_ids: list[int]) -> dict[int, list[DropLineage]]:
    rows = session.execute(
        select(Drop).where(Drop.article_id == _any(article_ids)).order_by(Drop.discovered_at, Drop.id)
    ).scalars()
    lineage: dict[int, list[DropLineage]] = defaultdict(list)
    for drop in rows:
        assert drop.article_id is not None  # selected by it
        lineage[drop.article_id].append(DropLineage(
            path=drop.path, sha256=drop.sha256, discovered_at=drop.discovered_at, host=drop.host,
            parsed_by=drop.parsed_by,
        ))
    return lineage


def _clusters(session: Session, cluster_ids: set[int]) -> dict[int | None, list[int]]:
    rows = session.execute(
        select(Article.cluster_id, Article.id).where(Article.cluster_id == _any(cluster_ids)).order_by(Article.id)
    ).all()
    members: dict[int | None, list[int]] = defaultdict(list)
    for cluster_id, article_id in rows:
        members[cluster_id].append(article_id)
    return members


def _entities(session: Session, article_ids: list[int]) -> dict[int, list[EntityMention]]:
    rows = session.execute(
        select(ArticleEntity.article_id, Entity.name, Entity.type, ArticleEntity.count)
        .join(Entity, Entity.id == ArticleEntity.entity_id)
        .where(ArticleEntity.article_id == _any(article_ids))
        .order_by(ArticleEntity.article_id, ArticleEntity.count.desc(), Entity.name)
    ).all()
    entities: dict[int, list[EntityMention]] = defaultdict(list)
    for article_id, name, kind, count in rows:
        entities[article_id].append(EntityMention(text=name, type=kind, count=count))
    return entities


def article_record(article: Article, drops: list[DropLineage], cluster: list[int],
                   entities: list[EntityMention]) -> ArticleRecord:
    enriched = article.enrichment_version is not None
    return ArticleRecord(
        cluster_id=article.cluster_id, is_canonical=article.is_canonical, cluster=cluster,
        language=article.language, word_count=article.word_count, reading_time_min=article.reading_time_min,
        summary=article.summary, keywords=article.keywords, countries=article.countries, tone=article.tone,
        entities=entities if enriched else None, enrichment_version=article.enrichment_version,
        enrichment_status=article.enrichment_status, enrichment_error=article.enrichment_error,
        id=article.id, content_hash=article.content_hash, title=article.title,
        published_on=article.published_on, source=article.source, source_raw=article.source_raw,
        paragraphs=article.paragraphs, body=article.body, warnings=article.warnings,
        pipeline_version=article.pipeline_version, drops=drops,
    )


# Index data, not record: never loaded for a consumer (sort_date and search_vector are deferred by the model).
NOT_RECORD = (defer(Article.shingles), defer(Article.minhash))


def records_of(session: Session, page: list[Article]) -> list[ArticleRecord]:
    """The consumer records of these articles, in their order: three statements for the whole page."""
    if not page:
        return []
    lineage = _lineage(session, [a.id for a in page])
    clusters = _clusters(session, {a.cluster_id for a in page if a.cluster_id is not None})
    entities = _entities(session, [a.id for a in page])
    return [article_record(article, lineage[article.id], clusters.get(article.cluster_id, [article.id]),
                           entities[article.id]) for article in page]


def record_of(session: Session, article_id: int) -> ArticleRecord | None:
    article = session.execute(select(Article).options(*NOT_RECORD).where(Article.id == article_id)).scalar()
    return records_of(session, [article])[0] if article is not None else None


def iter_articles(session: Session) -> Iterator[ArticleRecord]:
    last_id = 0
    while True:
        page = list(session.execute(
            select(Article).options(*NOT_RECORD).where(Article.id > last_id).order_by(Article.id).limit(PAGE_SIZE)
        ).scalars())
        if not page:
            return
        yield from records_of(session, page)
        last_id = page[-1].id
        session.expunge_all()


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
