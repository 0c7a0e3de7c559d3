"""enrichment

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 21:01:34.910068
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('entities',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entities')),
    sa.UniqueConstraint('type', 'name', name='uq_entities_type_name')
    )
    op.create_table('article_entities',
    sa.Column('article_id', sa.BigInteger(), nullable=False),
    sa.Column('entity_id', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['articles.id'], name=op.f('fk_article_entities_article_id_articles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['entity_id'], ['entities.id'], name=op.f('fk_article_entities_entity_id_entities')),
    sa.PrimaryKeyConstraint('article_id', 'entity_id', name=op.f('pk_article_entities'))
    )
    op.create_index('ix_article_entities_entity_id', 'article_entities', ['entity_id', 'article_id'], unique=False)
    op.add_column('articles', sa.Column('language', sa.String(length=8), nullable=True))
    op.add_column('articles', sa.Column('word_count', sa.Integer(), nullable=True))
    op.add_column('articles', sa.Column('reading_time_min', sa.Double(), nullable=True))
    op.add_column('articles', sa.Column('summary', sa.Text(), nullable=True))
    op.add_column('articles', sa.Column('keywords', postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column('articles', sa.Column('countries', postgresql.ARRAY(sa.String(length=2)), nullable=True))
    op.add_column('articles', sa.Column('tone', sa.Double(), nullable=True))
    op.add_column('articles', sa.Column('enrichment_version', sa.String(length=16), nullable=True))
    op.add_column('articles', sa.Column('enriched_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('articles', sa.Column('enrich_lease_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_articles_countries', 'articles', ['countries'], unique=False, postgresql_using='gin')
    op.create_index('ix_articles_enrichment_version', 'articles', ['enrichment_version'], unique=False)
    op.create_index('ix_articles_keywords', 'articles', ['keywords'], unique=False, postgresql_using='gin')


def downgrade() -> None:
    op.drop_index('ix_articles_keywords', table_name='articles', postgresql_using='gin')
    op.drop_index('ix_articles_enrichment_version', table_name='articles')
    op.drop_index('ix_articles_countries', table_name='articles', postgresql_using='gin')
    op.drop_column('articles', 'enrich_lease_expires_at')
    op.drop_column('articles', 'enriched_at')
    op.drop_column('articles', 'enrichment_version')
    op.drop_column('articles', 'tone')
    op.drop_column('articles', 'countries')
    op.drop_column('articles', 'keywords')
    op.drop_column('articles', 'summary')
    op.drop_column('articles', 'reading_time_min')
    op.drop_column('articles', 'word_count')
    op.drop_column('articles', 'language')
    op.drop_index('ix_article_entities_entity_id', table_name='article_entities')
    op.drop_table('article_entities')
    op.drop_table('entities')
