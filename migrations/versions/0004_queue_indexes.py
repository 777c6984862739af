"""Queue indexes hold only what is still queued: a finished delivery (the bulk of the table)
leaves the due index, and on PostgreSQL the per-webhook state index, so finishing a delivery
writes three index entries instead of six.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("state = 'pending'")
UNFINISHED = sa.text("state <> 'succeeded'")


def upgrade() -> None:
    # Plain index DDL on both databases (no batch mode: SQLite's table copy would cascade deletes).
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.create_index(
        "ix_deliveries_due", "deliveries", ["next_attempt_at"], postgresql_where=PENDING, sqlite_where=PENDING
    )
    if op.get_bind().dialect.name == "postgresql":
        # SQLite would not use it: its planner matches a partial index's condition only literally.
        op.drop_index("ix_deliveries_webhook_state", table_name="deliveries")
        op.create_index(
            "ix_deliveries_webhook_state", "deliveries", ["webhook_id", "state"], postgresql_where=UNFINISHED
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_deliveries_webhook_state", table_name="deliveries")
        op.create_index("ix_deliveries_webhook_state", "deliveries", ["webhook_id", "state"])
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
