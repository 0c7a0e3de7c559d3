"""Pydantic records that cross a process boundary: task payloads and consumer exports."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class DropStatus(StrEnum):
    """Where a drop is in its journey; everything but QUEUED is terminal."""

    QUEUED = "queued"
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    VANISHED = "vanished"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset(s for s in DropStatus if s is not DropStatus.QUEUED)


class Stage(StrEnum):
    """Where an unfinished item waits or is worked on: drops are parsed, then stored; articles enriched."""

    PARSE = "parse"
    STORE = "store"
    ENRICH = "enrich"


class EnrichmentStatus(StrEnum):
    """An article's enrichment (SPEC section 6): `failed` keeps `enrichment_error` and can be replayed."""

    PENDING = "pending"
    ENRICHED = "enriched"
    FAILED = "failed"


class DropReason(StrEnum):
    """Why a drop ended other than `stored`: the rejections (hard problems with the file, SPEC section 1),
    then the other terminal states' reasons."""

    EMPTY = "empty"
    NOT_TEXT = "not_text"
    TOO_LARGE = "too_large"
    NO_BODY = "no_body"
    UNREADABLE = "unreadable"
    MISSING_BYTES = "missing_bytes"  # the ledger lost the bytes it recorded (a bug or a manual deletion)
    VANISHED = "vanished"
    EXACT_DUPLICATE = "exact_duplicate"
    ERROR = "error"  # a permanent error in a stage, kept in `detail`
    RETRIES_EXHAUSTED = "retries_exhausted"


class ArticleWarning(StrEnum):
    """Soft problems: the article is stored and flagged."""

    HEADER_MISSING = "header_missing"
    DATE_INVALID = "date_invalid"


class ParsedArticle(BaseModel):
    """What the parser makes of one drop's bytes."""

    model_config = ConfigDict(frozen=True)

    title: str
    published_on: date | None
    source: str | None = Field(description="Display form of the credit line, e.g. 'Bloomberg News'.")
    source_raw: str | None = Field(description="The credit line as it stood in the file.")
    dateline: str | None = Field(default=None, description="A leading date paragraph, kept as a paragraph too.")
    paragraphs: list[str]
    warnings: list[ArticleWarning] = []
    encoding: str = Field(description="How the bytes were decoded, e.g. 'utf-8', 'utf-16', 'cp1252'.")
    content_hash: str = Field(description="SHA-256 of the normalised body: the exact-duplicate key.")

    @property
    def body(self) -> str:
        return "\n\n".join(self.paragraphs)


class Rejection(BaseModel):
    """Why a drop's bytes cannot become an article, in a code and in plain words."""

    model_config = ConfigDict(frozen=True)

    reason: DropReason
    detail: str


class DropOutcome(BaseModel):
    """One drop's result, sent from the worker to the storage service."""

    drop_id: int
    article: ParsedArticle | None = None
    rejection: Rejection | None = None
    error: str | None = Field(default=None, description="A permanent failure: the drop ends `failed`.")
    shingles: str | None = Field(default=None, description="Base64 of the body's word 5-shingle set: sorted "
                                 "unique 64-bit hashes, little-endian (see shared/similarity.py).")
    minhash: str | None = Field(default=None, description="Base64 of the body's MinHash signature, 128 "
                                "little-endian uint32.")
    parsed_by: str | None = Field(default=None, description="Hostname of the worker that parsed the drop.")
    search_vector: str | None = Field(default=None, description="Base64 of the article's search vector "
                                      "(`english`) in PostgreSQL's binary form, made by the worker's database: "
                                      "storage writes it as it is (shared/search.py).")


class DropLineage(BaseModel):
    path: str
    sha256: str | None
    discovered_at: datetime
    host: str = Field(description="Where the file was discovered.")
    parsed_by: str | None = Field(default=None, description="Host of the worker that parsed it.")


class EntityMention(BaseModel):
    text: str
    type: str = Field(description="person, organization, place, nationality or event")
    count: int


class ArticleRecord(BaseModel):
    """The consumer record of SPEC section 6 (`newsflow export articles`)."""

    id: int
    content_hash: str
    title: str
    published_on: date | None
    source: str | None
    source_raw: str | None
    paragraphs: list[str]
    body: str
    warnings: list[str]
    language: str | None = None
    word_count: int | None = None
    reading_time_min: float | None = None
    summary: str | None = None
    keywords: list[str] | None = None
    entities: list[EntityMention] | None = None
    countries: list[str] | None = None
    tone: float | None = None
    cluster_id: int | None = Field(default=None, description="Id of the cluster's canonical article.")
    is_canonical: bool | None = None
    cluster: list[int] = Field(default_factory=list, description="Ids of every article in the cluster.")
    pipeline_version: str
    enrichment_version: str | None = None
    enrichment_status: EnrichmentStatus = EnrichmentStatus.PENDING
    enrichment_error: str | None = Field(default=None, description="Why enrichment failed, when it did.")
    drops: list[DropLineage]


class DropRecord(BaseModel):
    """The drop record of SPEC section 6 (`newsflow export drops`)."""

    id: int
    path: str
    sha256: str | None
    size: int | None
    status: DropStatus
    reason: str | None
    detail: str | None
    article_id: int | None
    discovered_at: datetime
    finished_at: datetime | None
    host: str
    parsed_by: str | None = None


class EnrichInput(BaseModel):
    """What the enrichment stage needs of one stored article."""

    article_id: int
    title: str
    body: str
    dateline: str | None = Field(default=None, description="The leading date paragraph the parser found, if any: "
                                 "the summary starts after it.")


class Enrichment(BaseModel):
    """SPEC section 5 for one article, as the enrichment stage sends it to storage."""

    article_id: int
    version: str
    language: str | None = Field(description="ISO 639-1, or None when undetermined")
    entities: list[EntityMention] = []
    countries: list[str] = Field(default=[], description="ISO 3166-1 alpha-2 codes, sorted")
    keywords: list[str] = []
    summary: str
    tone: float | None = Field(description="-1..1; None for languages the sentiment lexicon does not cover")
    word_count: int
    reading_time_min: float
