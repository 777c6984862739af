"""Events remember what their type's schema did not accept when validation only warns
(``WEBHOOK_MCP_EVENT_VALIDATION=warn``): a JSON list of "data.path: message" lines, or NULL.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN on both databases (SQLite 3.35+): a table rebuild on SQLite would
    # cascade the DROP TABLE to the deliveries.
    op.add_column("events", sa.Column("problems", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "problems")
