"""Per-webhook counts of queued deliveries by state, kept by triggers in the transaction of every
change, so stats read a few rows instead of counting a backlog; and a per-webhook queue index
ordered by due time, so a claim finds the next due rows of each endpoint without walking the
backlog of one at its limit.

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = sa.text("state <> 'succeeded'")

# SQLite: row triggers (one writer, a counter row in cache costs microseconds). A finished
# delivery leaves the counts: succeeded ones are counted by the hourly rollups.
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER tr_deliveries_count_insert AFTER INSERT ON deliveries WHEN new.state <> 'succeeded' BEGIN "
    "INSERT INTO delivery_counts (webhook_id, state, shard, n) VALUES (new.webhook_id, new.state, 0, 1) "
    "ON CONFLICT (webhook_id, state, shard) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER tr_deliveries_count_update AFTER UPDATE OF state ON deliveries "
    "WHEN old.state IS NOT new.state BEGIN "
    "UPDATE delivery_counts SET n = n - 1 WHERE webhook_id = old.webhook_id AND state = old.state AND shard = 0; "
    "INSERT INTO delivery_counts (webhook_id, state, shard, n) SELECT new.webhook_id, new.state, 0, 1 "
    "WHERE new.state <> 'succeeded' ON CONFLICT (webhook_id, state, shard) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER tr_deliveries_count_delete AFTER DELETE ON deliveries WHEN old.state <> 'succeeded' BEGIN "
    "UPDATE delivery_counts SET n = n - 1 WHERE webhook_id = old.webhook_id AND state = old.state AND shard = 0; "
    "END",
)

# PostgreSQL: statement triggers over transition tables, one upsert per statement and state. Each
# connection adds to its own shard (backend pid mod 16), so publishers and result writers of one
# webhook do not queue on one counter row; readers sum the shards.
_PG_ADD = (
    "INSERT INTO delivery_counts AS c (webhook_id, state, shard, n) "
    "SELECT webhook_id, state, pg_backend_pid() % 16, sum(n) FROM ({changes}) AS changed "
    "WHERE state <> 'succeeded' GROUP BY webhook_id, state HAVING sum(n) <> 0 ORDER BY webhook_id, state "
    "ON CONFLICT (webhook_id, state, shard) DO UPDATE SET n = c.n + excluded.n;"
)
# (A delete cascading from its webhook counts nothing: the counts go with the webhook.)
_PG_FUNCTION = f"""
CREATE FUNCTION webhook_mcp_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_PG_ADD.format(changes="SELECT webhook_id, state, 1 AS n FROM new_rows")}
    ELSIF TG_OP = 'DELETE' THEN
        {
    _PG_ADD.format(
        changes="SELECT webhook_id, state, -1 AS n FROM old_rows AS o "
        "WHERE EXISTS (SELECT 1 FROM webhooks AS w WHERE w.id = o.webhook_id)"
    )
}
    ELSE
        {
    _PG_ADD.format(
        changes="SELECT webhook_id, state, 1 AS n FROM new_rows UNION ALL SELECT webhook_id, state, -1 FROM old_rows"
    )
}
    END IF;
    RETURN NULL;
END $$
"""
_PG_TRIGGERS = {
    "insert": "REFERENCING NEW TABLE AS new_rows",
    "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "REFERENCING OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.create_table(
        "delivery_counts",
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name="fk_delivery_counts_webhook_id_webhooks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("webhook_id", "state", "shard", name="pk_delivery_counts"),
    )
    op.execute(
        "INSERT INTO delivery_counts (webhook_id, state, shard, n) SELECT webhook_id, state, 0, count(*) "
        "FROM deliveries WHERE state <> 'succeeded' GROUP BY webhook_id, state"
    )
    is_postgres = op.get_bind().dialect.name == "postgresql"
    if is_postgres:
        op.execute(_PG_FUNCTION)
        for event, referencing in _PG_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER tr_deliveries_count_{event} AFTER {event.upper()} ON deliveries {referencing} "
                "FOR EACH STATEMENT EXECUTE FUNCTION webhook_mcp_count_deliveries()"
            )
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    op.drop_index("ix_deliveries_webhook_state", table_name="deliveries")
    op.create_index(
        "ix_deliveries_webhook_queue",
        "deliveries",
        ["webhook_id", "state", "next_attempt_at"],
        postgresql_where=UNFINISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_webhook_queue", table_name="deliveries")
    is_postgres = op.get_bind().dialect.name == "postgresql"
    op.create_index("ix_deliveries_webhook_state", "deliveries", ["webhook_id", "state"], postgresql_where=UNFINISHED)
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER tr_deliveries_count_{event}" + (" ON deliveries" if is_postgres else ""))
    if is_postgres:
        op.execute("DROP FUNCTION webhook_mcp_count_deliveries()")
    op.drop_table("delivery_counts")
