"""SQLAlchemy 2 models: the ledger of drops, their bytes, and the articles. Only Alembic changes the schema."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Computed,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from shared.records import DropStatus, EnrichmentStatus, Stage

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Xid8(UserDefinedType):
    """PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`), which SQLAlchemy has no type for."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "xid8"


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Blob(Base):
    """A file's original bytes, stored once per content (lineage, replay, rejected files kept)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now()


class Article(Base):
    """One article per distinct normalised body (content_hash)."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    published_on: Mapped[date | None]
    source: Mapped[str | None] = mapped_column(Text)
    source_raw: Mapped[str | None] = mapped_column(Text)
    dateline: Mapped[str | None] = mapped_column(Text)
    paragraphs: Mapped[list[str]] = mapped_column(JSONB)
    body: Mapped[str] = mapped_column(Text)
    warnings: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    encoding: Mapped[str] = mapped_column(String(16))
    pipeline_version: Mapped[str] = mapped_column(String(16))
    primary_sha256: Mapped[str | None] = mapped_column(String(64), doc="The drop whose title and date it carries")
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary, doc="MinHash signature, 128 little-endian uint32")
    shingles: Mapped[bytes | None] = mapped_column(
        LargeBinary, doc="Word 5-shingle set: sorted unique 64-bit hashes, little-endian (exact Jaccard)")
    cluster_id: Mapped[int | None] = mapped_column(BigInteger, doc="Id of the cluster's canonical article")
    is_canonical: Mapped[bool] = mapped_column(server_default=text("true"))
    language: Mapped[str | None] = mapped_column(String(8))
    word_count: Mapped[int | None]
    reading_time_min: Mapped[float | None]
    summary: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    countries: Mapped[list[str] | None] = mapped_column(ARRAY(String(2)))
    tone: Mapped[float | None]
    enrichment_version: Mapped[str | None] = mapped_column(String(16))
    enriched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enrichment_status: Mapped[EnrichmentStatus] = mapped_column(
        Enum(EnrichmentStatus, native_enum=False, length=8, values_callable=lambda e: [m.value for m in e]),
        server_default=text("'pending'"))
    enrichment_error: Mapped[str | None] = mapped_column(Text, doc="Why enrichment failed, when it did")
    # The enrichment ledger, as the drops' (below): sent, picked up, its lease from the pickup, counts.
    enrich_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enrich_picked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enrich_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enrich_deliveries: Mapped[int] = mapped_column(server_default=text("0"))
    enrich_retries: Mapped[int] = mapped_column(server_default=text("0"))
    created_at: Mapped[datetime] = _now()
    # The API's order (SPEC section 6: newest first, undated last) as one never-null key, so a keyset
    # cursor is a plain row comparison an index serves: undated articles sort as -infinity.
    # Never loaded: Python's date has no -infinity.
    sort_date: Mapped[date] = mapped_column(Computed("COALESCE(published_on, '-infinity'::date)", persisted=True),
                                            deferred=True)
    # Full-text search: title (weight A) and body (B), in the article's language's configuration once
    # enrichment knows it, `english` until then (shared/search.py).
    search_vector: Mapped[str | None] = mapped_column(TSVECTOR, deferred=True)

    __table_args__ = (
        Index("ix_articles_published_on", "published_on"),
        Index("ix_articles_search_vector", "search_vector", postgresql_using="gin"),
        # Keyset paging (sort_date DESC, id DESC), alone and under the equality filters of /v1/articles.
        Index("ix_articles_sort", "sort_date", "id"),
        Index("ix_articles_canonical_sort", "sort_date", "id", postgresql_where=text("is_canonical")),
        Index("ix_articles_source_sort", "source", "sort_date", "id"),
        Index("ix_articles_language_sort", "language", "sort_date", "id"),
        Index("ix_articles_cluster_id", "cluster_id"),
        Index("ix_articles_countries", "countries", postgresql_using="gin"),
        Index("ix_articles_enrichment_version", "enrichment_version"),
        Index("ix_articles_enriched_at", "enriched_at"),
        Index("ix_articles_source_created_at", "source", "created_at"),
        Index("ix_articles_enrich_in_queue", "enrich_sent_at", postgresql_where=text(
            "enrichment_status = 'pending' AND enrich_picked_at IS NULL AND enrich_sent_at IS NOT NULL")),
        Index("ix_articles_enrich_unfinished", "enrich_sent_at",
              postgresql_where=text("enrichment_status = 'pending'")),
    )


class Entity(Base):
    """A named entity, once per (type, name): people, organizations, places, nationalities, events."""

    __tablename__ = "entities"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("type", "name", name="uq_entities_type_name"),
                      Index("ix_entities_name", "name"))


class ArticleEntity(Base):
    """An entity mentioned in an article, with its mention count."""

    __tablename__ = "article_entities"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id"), primary_key=True)
    count: Mapped[int]
    # The article's `sort_date`, copied when the link is written and kept equal by a trigger when the article's date
    # changes (migration 0010), so that "articles mentioning X, newest first" is one ordered walk of the index below.
    sort_date: Mapped[date]

    __table_args__ = (
        Index("ix_article_entities_entity_sort", "entity_id", "sort_date", "article_id"),
        # The most mentioned entities of a window (GET /v1/entities), read from this index alone.
        Index("ix_article_entities_sort_entity", "sort_date", "entity_id", postgresql_include=["count"]),
    )


class ArticleKeyword(Base):
    """`articles.keywords` one row each, with the article's `sort_date`: "articles with keyword K, newest first" is
    one ordered walk of its index, where the GIN index of the array gave every match to sort. Written by triggers
    on `articles` only (migration 0010): whatever sets an article's keywords or date, these rows follow."""

    __tablename__ = "article_keywords"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    keyword: Mapped[str] = mapped_column(Text, primary_key=True)
    sort_date: Mapped[date]

    __table_args__ = (Index("ix_article_keywords_keyword_sort", "keyword", "sort_date", "article_id"),)


class ArticleChange(Base):
    """The change feed (SPEC section 6, `/v1/changes`): one row per change to an article, written in the
    transaction that makes the change. Served in (xid, position) order, and only below the oldest transaction
    still running, so no change can ever commit behind a position already served (shared/changes.py)."""

    __tablename__ = "article_changes"

    position: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    xid: Mapped[int] = mapped_column(Xid8, server_default=text("pg_current_xact_id()"),
                                     doc="The writing transaction's id")
    article_id: Mapped[int] = mapped_column(BigInteger, doc="No foreign key: a change outlives a merged article")
    change: Mapped[str] = mapped_column(String(16), doc="created, clustered, updated or enriched")
    at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_article_changes_xid_position", "xid", "position"),)


class LshBucket(Base):
    """The LSH index: an article's key in each band. Articles sharing a key are candidates."""

    __tablename__ = "lsh_buckets"

    band: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # No foreign key: it cost a trigger per row, 32 rows per article (migration 0005).
    article_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class ArticleLink(Base):
    """A confirmed near-duplicate pair (low id first); clusters are its connected components."""

    __tablename__ = "article_links"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    similarity: Mapped[float]

    __table_args__ = (Index("ix_article_links_other_id", "other_id"),)


class Drop(Base):
    """The ledger: one row per (path, content) ever seen, and the state it reached."""

    __tablename__ = "drops"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    path: Mapped[str] = mapped_column(Text, doc="A name that is not valid UTF-8 has those bytes escaped (\\xe9)")
    raw_path: Mapped[bytes | None] = mapped_column(LargeBinary, doc="The path's bytes, when not valid UTF-8")
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    host: Mapped[str] = mapped_column(Text, doc="Where the file was discovered")
    parsed_by: Mapped[str | None] = mapped_column(Text, doc="Host of the worker that parsed it")
    status: Mapped[DropStatus] = mapped_column(
        Enum(DropStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id"))
    # While queued: the stage it is in, when its message was sent and when a worker picked it up (None:
    # waiting in the queue); its lease runs from the pickup. `deliveries` counts pickups, `retries` the
    # re-sends after a lease ran out (capped: shared.ledger.MAX_RETRIES).
    stage: Mapped[Stage | None] = mapped_column(
        Enum(Stage, native_enum=False, length=8, values_callable=lambda e: [m.value for m in e]))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    picked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deliveries: Mapped[int] = mapped_column(server_default=text("0"))
    retries: Mapped[int] = mapped_column(server_default=text("0"))
    discovered_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("path", "sha256", name="uq_drops_path_sha256"),
        Index("ix_drops_article_id", "article_id"),
        Index("ix_drops_unfinished", "stage", "sent_at", postgresql_where=text("status = 'queued'")),
        Index("ix_drops_finished_at", "finished_at"),
        Index("ix_drops_sha256", "sha256"),
        Index("ix_drops_replay_backlog", "status", "reason", postgresql_where=text("status IN ('failed', 'rejected')")),
    )


class Heartbeat(Base):
    """A running service process, as it last said (every HEARTBEAT_S): what it consumes and how busy it is."""

    __tablename__ = "heartbeats"

    node: Mapped[str] = mapped_column(Text, primary_key=True, doc="Celery node name, or service@host:pid")
    service: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int]
    queues: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    concurrency: Mapped[int] = mapped_column(server_default=text("1"))
    active: Mapped[int] = mapped_column(server_default=text("0"), doc="Tasks running at the last beat")
    started_at: Mapped[datetime] = _now()
    beat_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """A key for the HTTP API (SPEC section 6, "Access"): stored hashed, with a name and a role."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(String(16), doc="reader or operator")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="SHA-256 hex of the key")
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OperatorAction(Base):
    """Something an operator key did through the API, with the key's name."""

    __tablename__ = "operator_actions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = _now()
    key_name: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict] = mapped_column(JSONB)


class SourceStats(Base):
    """Per source over the last 7 days, refreshed every few minutes (shared/status.py): the gaps' percentile is
    a window over every article of the week, too slow to compute at each `newsflow status`."""

    __tablename__ = "source_stats"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    articles: Mapped[int]
    usual_gap_s: Mapped[float | None]
    refreshed_at: Mapped[datetime] = _now()
