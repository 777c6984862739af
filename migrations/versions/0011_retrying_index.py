"""An index of the deliveries waiting to be tried again, per webhook in due order, so a webhook's
next retry is found without walking a backlog that was never tried.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETRYING = sa.text("state = 'pending' AND attempts > 0")


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_retrying",
        "deliveries",
        ["webhook_id", "next_attempt_at"],
        postgresql_where=RETRYING,
        sqlite_where=RETRYING,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_retrying", table_name="deliveries")
