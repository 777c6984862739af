"""Tenants: every webhook and event belongs to one; what exists already goes to tenant 1,
"default". Idempotency keys become unique per tenant.

On SQLite, changing the events table's unique constraint rebuilds the table (SQLite cannot drop a
constraint); the migration runner turns foreign keys off meanwhile, so the rebuild does not
cascade into deliveries, and checks them afterwards.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    op.bulk_insert(tenants, [{"id": 1, "name": "default", "created_at": time.time()}])
    if op.get_bind().dialect.name == "postgresql":
        # The explicit id above did not advance the sequence.
        op.execute("SELECT setval(pg_get_serial_sequence('tenants', 'id'), 1)")
    op.create_table(
        "tenant_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(500), server_default="", nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_tenant_tokens_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tenant_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_tenant_tokens_token_hash"),
    )
    op.create_index("ix_tenant_tokens_tenant_id", "tenant_tokens", ["tenant_id"])
    # Plain ADD COLUMN (no rebuild of webhooks, which deliveries reference).
    op.add_column("webhooks", sa.Column("tenant_id", sa.Integer(), server_default="1", nullable=False))
    op.create_index("ix_webhooks_tenant_id", "webhooks", ["tenant_id"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("tenant_id", sa.Integer(), server_default="1", nullable=False))
        batch.drop_constraint("uq_events_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_events_tenant_id_idempotency_key", ["tenant_id", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("uq_events_tenant_id_idempotency_key", type_="unique")
        batch.drop_column("tenant_id")
        batch.create_unique_constraint("uq_events_idempotency_key", ["idempotency_key"])
    op.drop_index("ix_webhooks_tenant_id", table_name="webhooks")
    op.drop_column("webhooks", "tenant_id")
    op.drop_index("ix_tenant_tokens_tenant_id", table_name="tenant_tokens")
    op.drop_table("tenant_tokens")
    op.drop_table("tenants")
