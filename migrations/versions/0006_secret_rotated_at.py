"""When a webhook's secret was last rotated, so an attempt's signature can be rebuilt knowing
whether today's secret is the one that signed it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases (no SQLite table rebuild, which would cascade deletes).
    op.add_column("webhooks", sa.Column("secret_rotated_at", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("webhooks", "secret_rotated_at")
