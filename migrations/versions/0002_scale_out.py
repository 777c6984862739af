"""Scale-out: hourly attempt rollups for fast stats, a leased-deliveries index for cluster-wide
per-endpoint limits, and indexes for filtered log pages.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOUNDS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
HISTOGRAM = (*(f"le_{bound}ms" for bound in BOUNDS), "over_30000ms")


def upgrade() -> None:
    op.create_table(
        "attempt_rollups",
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("tests", sa.Integer(), nullable=False),
        sa.Column("deliveries_succeeded", sa.Integer(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.Column("last_success_at", sa.Float(), nullable=True),
        sa.Column("last_failure_at", sa.Float(), nullable=True),
        *(sa.Column(name, sa.Integer(), server_default="0", nullable=False) for name in HISTOGRAM),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_attempt_rollups_webhook_id_webhooks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("webhook_id", "hour", name=op.f("pk_attempt_rollups")),
    )
    leased = sa.text("lease_owner IS NOT NULL")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_leased",
            ["webhook_id", "next_attempt_at"],
            unique=False,
            postgresql_where=leased,
            sqlite_where=leased,
        )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_attempts_webhook_id_success_id", ["webhook_id", "success", "id"], unique=False
        )
        batch_op.create_index(
            "ix_delivery_attempts_webhook_id_is_test_id", ["webhook_id", "is_test", "id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        # deliveries is a queue: most rows change within seconds of arriving. Keep its planner
        # statistics and dead-row cleanup close behind, or claims get planned for an empty table.
        op.execute(
            "ALTER TABLE deliveries SET (autovacuum_analyze_scale_factor = 0.02, "
            "autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_threshold = 500)"
        )

    # Existing logs become rollups, so stats stay the same across the upgrade.
    hour = (
        "floor(created_at / 3600) * 3600"
        if op.get_bind().dialect.name == "postgresql"
        else ("CAST(created_at / 3600 AS INTEGER) * 3600")
    )
    buckets = [
        f"SUM(CASE WHEN response_ms <= {high}{f' AND response_ms > {BOUNDS[i - 1]}' if i else ''} THEN 1 ELSE 0 END)"
        for i, high in enumerate(BOUNDS)
    ]
    buckets.append(f"SUM(CASE WHEN response_ms > {BOUNDS[-1]} THEN 1 ELSE 0 END)")
    op.execute(
        f"INSERT INTO attempt_rollups (webhook_id, hour, attempts, succeeded, tests, deliveries_succeeded, "
        f"total_ms, last_success_at, last_failure_at, {', '.join(HISTOGRAM)}) "
        f"SELECT webhook_id, {hour}, COUNT(*), SUM(CASE WHEN success THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN is_test THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN success AND NOT is_test THEN 1 ELSE 0 END), SUM(response_ms), "
        f"MAX(CASE WHEN success THEN created_at END), MAX(CASE WHEN NOT success THEN created_at END), "
        f"{', '.join(buckets)} FROM delivery_attempts GROUP BY webhook_id, {hour}"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE deliveries RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_scale_factor, "
            "autovacuum_analyze_threshold)"
        )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_attempts_webhook_id_is_test_id")
        batch_op.drop_index("ix_delivery_attempts_webhook_id_success_id")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_leased")
    op.drop_table("attempt_rollups")
