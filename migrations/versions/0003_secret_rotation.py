"""Secret rotation: the replaced secret keeps signing beside the new one until it expires.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: no table rebuild on SQLite (whose DROP TABLE would
    # cascade to the deliveries).
    op.add_column("webhooks", sa.Column("previous_secret", sa.String(length=200), nullable=True))
    op.add_column("webhooks", sa.Column("previous_secret_expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), again to avoid a table rebuild.
    op.drop_column("webhooks", "previous_secret_expires_at")
    op.drop_column("webhooks", "previous_secret")
