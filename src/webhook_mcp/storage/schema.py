"""The schema, as SQLAlchemy Core tables; Alembic migrations create it, tests may ``create_all``.

Times are stored as epoch seconds (double precision): cheap to compare and index on both SQLite
and PostgreSQL, and the dispatcher's hot path never parses date strings.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from webhook_mcp.core.tenancy import DEFAULT_TENANT_ID, MAX_TENANT_NAME_LENGTH

# PostgreSQL's conditions of the partial indexes, given to them by ``partial_indexes()`` when
# something writes their DDL (migrations compare against it): naming ``postgresql_where`` here
# would import SQLAlchemy's PostgreSQL dialect into every process, SQLite ones too.
_POSTGRES_WHERE: list[tuple[Index, ColumnElement[bool]]] = []


def postgres_partial(index: Index, where: ColumnElement[bool]) -> Index:
    _POSTGRES_WHERE.append((index, where))
    return index


def partial_indexes() -> MetaData:
    """The metadata with PostgreSQL's partial-index conditions (idempotent)."""
    for index, where in _POSTGRES_WHERE:
        index.dialect_options["postgresql"]["where"] = where
    return metadata


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit keys for the big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
MAX_ERROR_LENGTH = 1000

# Each shop a deployment serves. Tenant 1, "default", owns everything in a deployment that never
# names one. A tenant being deleted keeps its row (``deleted_at`` set, invisible to everyone)
# until the last batch of its data is gone.
tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(MAX_TENANT_NAME_LENGTH), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("deleted_at", Float),
    UniqueConstraint("name"),
)

# Tokens that reach one tenant's data only; stored as SHA-256 of the token (shown once, at issue).
tenant_tokens = Table(
    "tenant_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False),
    # The token's first characters ("wmt_" and a few more), so an operator can tell tokens apart.
    Column("hint", String(16), nullable=False, server_default=""),
    Column("label", String(MAX_DESCRIPTION_LENGTH), nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float),
    UniqueConstraint("token_hash"),
    Index("ix_tenant_tokens_tenant_id", "tenant_id"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # No foreign key: SQLite cannot add a column with one to an existing table; deleting a tenant
    # deletes its webhooks first.
    Column("tenant_id", Integer, nullable=False, server_default=str(DEFAULT_TENANT_ID)),
    Column("url", String(MAX_URL_LENGTH), nullable=False),
    Column("description", String(MAX_DESCRIPTION_LENGTH), nullable=False, server_default=""),
    Column("events", JSON, nullable=False),
    # Secrets hold "whsec_..." or, with WEBHOOK_MCP_SECRET_KEY, "fernet:..." (see vault.py). After
    # a rotation the replaced secret still signs, beside the new one, until its expiry.
    Column("secret", String(200), nullable=False),
    Column("previous_secret", String(200)),
    Column("previous_secret_expires_at", Float),
    # Set by each rotation (null: never rotated), so the dashboard knows which secret signed an attempt.
    Column("secret_rotated_at", Float),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("disabled_reason", String(MAX_DESCRIPTION_LENGTH)),
    Column("disabled_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Health of real deliveries (tests excluded), kept per batch for auto-disable.
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("failing_since", Float),
    Column("last_success_at", Float),
    Column("last_failure_at", Float),
    Index("ix_webhooks_tenant_id", "tenant_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),
    # Whose event it is: it reaches only that tenant's webhooks.
    Column("tenant_id", Integer, nullable=False, server_default=str(DEFAULT_TENANT_ID)),
    Column("type", String(200), nullable=False),
    # The exact bytes that are signed and sent, so every retry carries the same body.
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("idempotency_key", String(200)),
    # JSON list of what the type's schema did not accept, when validation only warns; else NULL.
    Column("problems", Text),
    Index("ix_events_created_at", "created_at"),
    # Keys are the tenant's own: two shops may both send "ord_1".
    UniqueConstraint("tenant_id", "idempotency_key"),
)

# state: pending (due at next_attempt_at; a claim pushes next_attempt_at forward by the lease),
# held (webhook disabled), succeeded, failed (attempts exhausted: dead, retry_delivery revives it).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("webhook_id", Integer, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(40), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(64)),
    Column("last_status", Integer),
    Column("last_error", String(MAX_ERROR_LENGTH)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("completed_at", Float),
    UniqueConstraint("webhook_id", "event_id"),
    Index("ix_deliveries_event_id", "event_id"),
)
# Partial, so a finished delivery leaves them: finishing one writes three index entries, not six.
postgres_partial(
    Index(
        "ix_deliveries_due",
        deliveries.c.next_attempt_at,
        sqlite_where=deliveries.c.state == "pending",
    ),
    deliveries.c.state == "pending",
)
# Each webhook's queue in due order: a claim probes the next due rows of each endpoint without
# walking the backlog of one at its limit. SQLite keeps the whole index: its planner matches a
# partial index's condition only literally.
postgres_partial(
    Index(
        "ix_deliveries_webhook_queue",
        deliveries.c.webhook_id,
        deliveries.c.state,
        deliveries.c.next_attempt_at,
    ),
    deliveries.c.state != "succeeded",
)

# Deliveries per webhook and state (succeeded ones excepted: the rollups count those), kept by
# triggers on deliveries (migration 0008) in the same transaction as every change, so they are
# exact, and stats read a few rows instead of counting a backlog. On PostgreSQL each connection
# adds to its own shard, so concurrent writers do not queue on one row; readers sum the shards.
delivery_counts = Table(
    "delivery_counts",
    metadata,
    Column("webhook_id", Integer, ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(16), primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# An append-only log without foreign keys (checking them cost a quarter of each write, migration
# 0005): result batches lock their webhooks and skip deleted ones, and deleting a webhook deletes
# its attempts first.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("webhook_id", Integer, nullable=False),
    Column("delivery_id", BigId),
    Column("event_id", String(40), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    Column("is_test", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status_code", Integer),
    Column("response_ms", Float, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("error", String(MAX_ERROR_LENGTH)),
    Column("response_excerpt", Text, nullable=False, server_default=""),
    Index("ix_delivery_attempts_webhook_id_id", "webhook_id", "id"),
    Index("ix_delivery_attempts_webhook_id_created_at", "webhook_id", "created_at"),
    Index("ix_delivery_attempts_created_at", "created_at"),
    Index("ix_delivery_attempts_delivery_id", "delivery_id"),
    Index("ix_delivery_attempts_webhook_id_success_id", "webhook_id", "success", "id"),
    Index("ix_delivery_attempts_webhook_id_is_test_id", "webhook_id", "is_test", "id"),
)

# Upper bounds (ms) of the response-time histogram kept per webhook and hour; the last is open.
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
HISTOGRAM_COLUMNS = (*(f"le_{bound}ms" for bound in LATENCY_BUCKETS_MS), "over_30000ms")

# Pre-aggregated attempt counts per webhook and hour, written with the attempts themselves, so
# get_webhook_stats reads a few hundred rows instead of scanning millions of log rows.
attempt_rollups = Table(
    "attempt_rollups",
    metadata,
    Column("webhook_id", Integer, ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True),
    Column("hour", Float, primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False),
    Column("tests", Integer, nullable=False),
    Column("deliveries_succeeded", Integer, nullable=False),
    Column("total_ms", Float, nullable=False),
    Column("last_success_at", Float),
    Column("last_failure_at", Float),
    *(Column(name, Integer, nullable=False, server_default="0") for name in HISTOGRAM_COLUMNS),
)

# Deliveries waiting to be tried again, per webhook in due order: the "next retry" of a webhook's
# stats is one probe here, instead of a walk past a backlog never tried yet (which comes first in
# due order). Partial: it holds only what failed and waits, a few rows even when a million queue.
postgres_partial(
    Index(
        "ix_deliveries_retrying",
        deliveries.c.webhook_id,
        deliveries.c.next_attempt_at,
        sqlite_where=(deliveries.c.state == "pending") & (deliveries.c.attempts > 0),
    ),
    (deliveries.c.state == "pending") & (deliveries.c.attempts > 0),
)

# Deliveries leased right now, counted per webhook when claiming, so the per-endpoint limit holds
# across every worker; partial, so it stays as small as the work in flight.
postgres_partial(
    Index(
        "ix_deliveries_leased",
        deliveries.c.webhook_id,
        deliveries.c.next_attempt_at,
        sqlite_where=deliveries.c.lease_owner.is_not(None),
    ),
    deliveries.c.lease_owner.is_not(None),
)

# Workers that hold a liveness lock (see ``storage.liveness``): PostgreSQL only, where a lock
# nobody holds must be told apart from a worker that never took one.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", Float, nullable=False),
)
