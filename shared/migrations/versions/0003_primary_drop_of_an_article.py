"""primary drop of an article

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 20:56:55.696766
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('articles', sa.Column('primary_sha256', sa.String(length=64), nullable=True))
    op.execute("UPDATE articles a SET primary_sha256 = d.sha256 FROM drops d "
               "WHERE d.article_id = a.id AND d.status = 'stored'")


def downgrade() -> None:
    op.drop_column('articles', 'primary_sha256')
