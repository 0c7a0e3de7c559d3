"""heartbeats of the services, API keys, operator actions, and the indexes `newsflow status` reads through

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:30:00

Every service process records a heartbeat row (node, service, queues, concurrency, tasks running, when it
started and when it last beat), so the operator view knows the consumers of each stage without a broadcast
that waits out its timeout, and with none running. The status figures read recent drops by when they
ended, recent enrichments by when they were stored, the replay backlog, and each source's articles by
time: an index for each, so a ledger of millions answers in milliseconds. API keys are stored hashed
(SHA-256 of a random 256-bit key) with a name and a role; every operator action through the API is
recorded with its key's name.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'heartbeats',
        sa.Column('node', sa.Text(), nullable=False),
        sa.Column('service', sa.String(16), nullable=False),
        sa.Column('host', sa.Text(), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('queues', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column('concurrency', sa.Integer(), server_default=sa.text('1'), nullable=False),
        sa.Column('active', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('beat_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('node', name=op.f('pk_heartbeats')),
    )
    op.create_table(
        'api_keys',
        sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('key_hash', sa.String(64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
        sa.UniqueConstraint('name', name=op.f('uq_api_keys_name')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    )
    op.create_table(
        'operator_actions',
        sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('key_name', sa.Text(), nullable=False),
        sa.Column('action', sa.String(32), nullable=False),
        sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_actions')),
    )
    op.create_table(
        'source_stats',
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('articles', sa.Integer(), nullable=False),
        sa.Column('usual_gap_s', sa.Float(), nullable=True),
        sa.Column('refreshed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('source', name=op.f('pk_source_stats')),
    )
    op.create_index('ix_drops_finished_at', 'drops', ['finished_at'], unique=False)
    op.create_index('ix_drops_sha256', 'drops', ['sha256'], unique=False)  # retention: who still needs a blob
    # What waits in the enrichment queue (its bound is counted on every storage batch).
    op.create_index('ix_articles_enrich_in_queue', 'articles', ['enrich_sent_at'], unique=False, postgresql_where=sa.text(
        "enrichment_status = 'pending' AND enrich_picked_at IS NULL AND enrich_sent_at IS NOT NULL"))
    op.create_index('ix_drops_replay_backlog', 'drops', ['status', 'reason'], unique=False,
                    postgresql_where=sa.text("status IN ('failed', 'rejected')"))
    op.create_index('ix_articles_enriched_at', 'articles', ['enriched_at'], unique=False)
    op.create_index('ix_articles_source_created_at', 'articles', ['source', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_articles_source_created_at', table_name='articles')
    op.drop_index('ix_articles_enriched_at', table_name='articles')
    op.drop_index('ix_drops_replay_backlog', table_name='drops',
                  postgresql_where=sa.text("status IN ('failed', 'rejected')"))
    op.drop_index('ix_drops_finished_at', table_name='drops')
    op.drop_index('ix_drops_sha256', table_name='drops')
    op.drop_index('ix_articles_enrich_in_queue', table_name='articles', postgresql_where=sa.text(
        "enrichment_status = 'pending' AND enrich_picked_at IS NULL AND enrich_sent_at IS NOT NULL"))
    op.drop_table('heartbeats')
    op.drop_table('source_stats')
    op.drop_table('operator_actions')
    op.drop_table('api_keys')
