"""Tenant tokens keep their first characters (never the whole token, which is stored hashed), so
an operator listing tokens can tell which one to revoke.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_tokens") as batch:
        batch.add_column(sa.Column("hint", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("tenant_tokens") as batch:
        batch.drop_column("hint")
