"""near-duplicate index and clusters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 20:52:10.705817
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('article_links',
    sa.Column('article_id', sa.BigInteger(), nullable=False),
    sa.Column('other_id', sa.BigInteger(), nullable=False),
    sa.Column('similarity', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['articles.id'], name=op.f('fk_article_links_article_id_articles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['other_id'], ['articles.id'], name=op.f('fk_article_links_other_id_articles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('article_id', 'other_id', name=op.f('pk_article_links'))
    )
    op.create_index('ix_article_links_other_id', 'article_links', ['other_id'], unique=False)
    op.create_table('lsh_buckets',
    sa.Column('band', sa.SmallInteger(), nullable=False),
    sa.Column('bucket', sa.BigInteger(), nullable=False),
    sa.Column('article_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['articles.id'], name=op.f('fk_lsh_buckets_article_id_articles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('band', 'bucket', 'article_id', name=op.f('pk_lsh_buckets'))
    )
    op.add_column('articles', sa.Column('minhash', sa.LargeBinary(), nullable=True))
    op.add_column('articles', sa.Column('cluster_id', sa.BigInteger(), nullable=True))
    op.add_column('articles', sa.Column('is_canonical', sa.Boolean(), server_default=sa.text('true'), nullable=False))
    op.create_index('ix_articles_cluster_id', 'articles', ['cluster_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_articles_cluster_id', table_name='articles')
    op.drop_column('articles', 'is_canonical')
    op.drop_column('articles', 'cluster_id')
    op.drop_column('articles', 'minhash')
    op.drop_table('lsh_buckets')
    op.drop_index('ix_article_links_other_id', table_name='article_links')
    op.drop_table('article_links')
