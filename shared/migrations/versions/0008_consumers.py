"""downstream consumers: full-text search, keyset sort keys, the change feed, the `reader` schema and role

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 18:30:00

- `articles.search_vector`: title (weight A) and body (B) as a tsvector with a GIN index; backfilled here in
  the article's language's configuration (shared/search.py names them), `english` when it is not known.
- `articles.sort_date`: `published_on`, undated as -infinity, so the API's order (newest first, undated last,
  then id) is a plain row comparison that the (sort_date, id) indexes serve, alone and under each filter.
- `article_changes`: the change feed, one row per change in the changing transaction, with that transaction's
  id (xid8): the API serves it in (xid, position) order below the oldest running transaction.
- `reader`: views for direct SQL readers (no blobs, no index data) and the NOLOGIN role `newsflow_reader`
  that may read them and nothing else. Roles belong to the cluster and outlive a database: it is created only
  when missing, and the downgrade drops it only when no other database still grants it something.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.models import Xid8
from shared.search import CONFIG_OF_LANGUAGE_SQL

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READER_ROLE = "newsflow_reader"
VIEWS = {
    "articles": ("Articles, one per distinct text (SPEC sections 4 to 6): the fields of the consumer record, without "
                 "the near-duplicate index data. search_vector: title (A) and body (B) for full-text search.",
                 "SELECT id, content_hash, title, published_on, source, source_raw, dateline, paragraphs, body, "
                 "warnings, language, word_count, reading_time_min, summary, keywords, countries, tone, cluster_id, "
                 "is_canonical, enrichment_status, enrichment_error, enrichment_version, enriched_at, "
                 "pipeline_version, primary_sha256, created_at, search_vector FROM public.articles"),
    "drops": ("The ledger: every file seen (path, SHA-256), the state it reached and why, and its article. "
              "The bytes are not readable here.",
              "SELECT id, path, sha256, size, status, reason, detail, article_id, host, parsed_by, discovered_at, "
              "finished_at FROM public.drops"),
    "clusters": ("Stories: each cluster of near-duplicate articles with its canonical article (id), size, "
                 "first and last publication dates and sources.",
                 "SELECT cluster_id AS id, count(*) AS articles, min(published_on) AS first_published_on, "
                 "max(published_on) AS last_published_on, "
                 "array_agg(DISTINCT source) FILTER (WHERE source IS NOT NULL) AS sources "
                 "FROM public.articles GROUP BY cluster_id"),
    "article_links": ("Confirmed near-duplicate pairs (low id first) with their Jaccard similarity.",
                      "SELECT article_id, other_id, similarity FROM public.article_links"),
    "entities": ("Named entities, once per (type, name).", "SELECT id, type, name FROM public.entities"),
    "article_entities": ("Which article mentions which entity, and how often.",
                         "SELECT article_id, entity_id, count FROM public.article_entities"),
    "article_changes": ("Every change to an article (created, clustered, updated, enriched) with the id of the "
                        "transaction that wrote it. To follow it without skipping, read in (xid, position) order "
                        "only rows with xid < pg_snapshot_xmin(pg_current_snapshot()), as the API does.",
                        "SELECT position, xid, article_id, change, at FROM public.article_changes"),
}
CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
        CREATE ROLE {READER_ROLE} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END
$$"""
DROP_ROLE = f"""
DO $$
BEGIN
    DROP ROLE IF EXISTS {READER_ROLE};
EXCEPTION WHEN dependent_objects_still_exist THEN
    RAISE NOTICE 'role {READER_ROLE} kept: another database still grants it privileges';
END
$$"""


def upgrade() -> None:
    op.add_column('articles', sa.Column('sort_date', sa.Date(), sa.Computed(
        "COALESCE(published_on, '-infinity'::date)", persisted=True), nullable=False))
    op.add_column('articles', sa.Column('search_vector', postgresql.TSVECTOR(), nullable=True))
    op.execute(f"""
        UPDATE articles SET search_vector =
            setweight(to_tsvector(c.config, title), 'A') || setweight(to_tsvector(c.config, body), 'B')
        FROM (SELECT a.id, ({CONFIG_OF_LANGUAGE_SQL.format(language='a.language')}) AS config
              FROM articles a) c
        WHERE articles.id = c.id""")
    op.create_index('ix_articles_search_vector', 'articles', ['search_vector'], unique=False, postgresql_using='gin')
    op.create_index('ix_articles_sort', 'articles', ['sort_date', 'id'], unique=False)
    op.create_index('ix_articles_canonical_sort', 'articles', ['sort_date', 'id'], unique=False,
                    postgresql_where=sa.text('is_canonical'))
    op.create_index('ix_articles_source_sort', 'articles', ['source', 'sort_date', 'id'], unique=False)
    op.create_index('ix_articles_language_sort', 'articles', ['language', 'sort_date', 'id'], unique=False)
    op.create_index('ix_entities_name', 'entities', ['name'], unique=False)
    op.create_table(
        'article_changes',
        sa.Column('position', sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column('xid', Xid8(), server_default=sa.text('pg_current_xact_id()'), nullable=False),
        sa.Column('article_id', sa.BigInteger(), nullable=False),
        sa.Column('change', sa.String(16), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('position', name=op.f('pk_article_changes')),
    )
    op.create_index('ix_article_changes_xid_position', 'article_changes', ['xid', 'position'], unique=False)
    # Articles stored before the feed existed: one `created` each, in id order, so a consumer starting at the
    # beginning of the feed sees every article.
    op.execute("INSERT INTO article_changes (article_id, change, at) "
               "SELECT id, 'created', created_at FROM articles ORDER BY id")
    create_reader_schema()


def create_reader_schema() -> None:
    op.execute(CREATE_ROLE)
    op.execute("CREATE SCHEMA IF NOT EXISTS reader")
    op.execute("COMMENT ON SCHEMA reader IS 'newsflow for direct SQL readers: grant newsflow_reader to a login "
               "role to read these views (and nothing else)'")
    for name, (comment, query) in VIEWS.items():
        op.execute(f"CREATE OR REPLACE VIEW reader.{name} AS {query}")
        quoted = comment.replace("'", "''")
        op.execute(f"COMMENT ON VIEW reader.{name} IS '{quoted}'")
    op.execute(f"GRANT USAGE ON SCHEMA reader TO {READER_ROLE}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA reader TO {READER_ROLE}")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS reader CASCADE")
    op.execute(DROP_ROLE)
    op.drop_index('ix_article_changes_xid_position', table_name='article_changes')
    op.drop_table('article_changes')
    op.drop_index('ix_entities_name', table_name='entities')
    op.drop_index('ix_articles_language_sort', table_name='articles')
    op.drop_index('ix_articles_source_sort', table_name='articles')
    op.drop_index('ix_articles_canonical_sort', table_name='articles', postgresql_where=sa.text('is_canonical'))
    op.drop_index('ix_articles_sort', table_name='articles')
    op.drop_index('ix_articles_search_vector', table_name='articles', postgresql_using='gin')
    op.drop_column('articles', 'search_vector')
    op.drop_column('articles', 'sort_date')
