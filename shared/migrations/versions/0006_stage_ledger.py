"""the ledger knows each item's stage: sent, picked up, deliveries; enrichment gets the same bookkeeping

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:10:00

A lease used to start when a drop was sent, so a queue that was merely slow ran leases out and the
reconciler counted each expiry as a delivery: enough waiting failed a drop (`retries_exhausted`) that
no worker had ever touched. Now each unfinished drop records its stage (`parse` or `store`), when its
message was sent and when a worker picked it up; its lease starts at the pickup, `deliveries` counts
pickups and `retries` the re-sends after a lease ran out (the cap). Articles get the same for
enrichment, with `enrichment_status` (pending, enriched, failed) and `enrichment_error` (SPEC section 6).
A file name that is not valid UTF-8 is stored escaped in `path`, its bytes in `raw_path`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column('drops', 'attempts', new_column_name='retries')
    op.add_column('drops', sa.Column('stage', sa.String(8), nullable=True))
    op.add_column('drops', sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('drops', sa.Column('picked_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('drops', sa.Column('deliveries', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('drops', sa.Column('raw_path', sa.LargeBinary(), nullable=True))
    # Queued drops start again from parsing, as sent now: nobody holds them yet.
    op.execute("UPDATE drops SET stage = 'parse', sent_at = now(), lease_expires_at = NULL WHERE status = 'queued'")
    op.drop_index('ix_drops_queued_lease', table_name='drops', postgresql_where=sa.text("status = 'queued'"))
    op.create_index('ix_drops_unfinished', 'drops', ['stage', 'sent_at'], unique=False,
                    postgresql_where=sa.text("status = 'queued'"))

    op.add_column('articles', sa.Column('enrichment_status', sa.String(8), server_default=sa.text("'pending'"),
                                        nullable=False))
    op.add_column('articles', sa.Column('enrichment_error', sa.Text(), nullable=True))
    op.add_column('articles', sa.Column('enrich_sent_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('articles', sa.Column('enrich_picked_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('articles', sa.Column('enrich_deliveries', sa.Integer(), server_default=sa.text('0'),
                                        nullable=False))
    op.add_column('articles', sa.Column('enrich_retries', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.execute("UPDATE articles SET enrichment_status = 'enriched', enrich_lease_expires_at = NULL "
               "WHERE enrichment_version IS NOT NULL")
    op.execute("UPDATE articles SET enrich_sent_at = now(), enrich_lease_expires_at = NULL "
               "WHERE enrichment_status = 'pending'")
    op.create_index('ix_articles_enrich_unfinished', 'articles', ['enrich_sent_at'], unique=False,
                    postgresql_where=sa.text("enrichment_status = 'pending'"))


def downgrade() -> None:
    op.drop_index('ix_articles_enrich_unfinished', table_name='articles',
                  postgresql_where=sa.text("enrichment_status = 'pending'"))
    for column in ('enrich_retries', 'enrich_deliveries', 'enrich_picked_at', 'enrich_sent_at', 'enrichment_error',
                   'enrichment_status'):
        op.drop_column('articles', column)
    op.drop_index('ix_drops_unfinished', table_name='drops', postgresql_where=sa.text("status = 'queued'"))
    op.execute("UPDATE drops SET lease_expires_at = now() WHERE status = 'queued'")  # re-sent by the reconciler
    op.create_index('ix_drops_queued_lease', 'drops', ['lease_expires_at'], unique=False,
                    postgresql_where=sa.text("status = 'queued'"))
    for column in ('raw_path', 'deliveries', 'picked_at', 'sent_at', 'stage'):
        op.drop_column('drops', column)
    op.alter_column('drops', 'retries', new_column_name='attempts')
