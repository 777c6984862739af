"""The dispatcher's hot statements as plain driver SQL: what both dialects share, and the shape of
the set each dialect fills in (``sql.postgresql``, ``sql.sqlite``).

They run many times a second, so they are fixed texts with list parameters (PostgreSQL arrays,
SQLite JSON arrays) rather than SQLAlchemy statements with expanding ``IN`` lists: a fixed text is
parsed once and, on PostgreSQL, prepared once per connection, and no per-call compile is paid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from webhook_mcp.storage.schema import attempt_rollups

CLAIM_LOCK_SPACE = 0x77686D64  # advisory lock namespace: per-webhook claim serialisation

# An attempt log row, then what becomes of its delivery.
ATTEMPT_COLUMNS = (
    "webhook_id",
    "delivery_id",
    "event_id",
    "event_type",
    "attempt_number",
    "is_test",
    "created_at",
    "status_code",
    "response_ms",
    "success",
    "error",
    "response_excerpt",
)
OUTCOME_COLUMNS = ("next_state", "next_attempt_at", "completed_at")
ATTEMPT_LIST = ", ".join(ATTEMPT_COLUMNS)

HOOK_COLUMNS = "w.id, w.url, w.secret, w.enabled, w.previous_secret, w.previous_secret_expires_at"
# Other workers' unexpired leases on a webhook, counted through the small partial index.
BUSY_ELSEWHERE = (
    "(SELECT count(*) FROM deliveries AS b{hint} WHERE b.webhook_id = w.id AND b.lease_owner IS NOT NULL "
    "AND b.lease_owner <> {owner} AND b.next_attempt_at > {now}) AS busy"
)


def ranked(window: str, per_hook: str) -> str:
    """The oldest due rows, at most ``per_hook`` of each webhook: a webhook with a long backlog
    costs the claim a few rows, not a whole window of rows it has no room for. ``scanned`` tells
    whether the window was full (more may be due behind it)."""
    return (
        "SELECT id, webhook_id, next_attempt_at, scanned FROM (SELECT id, webhook_id, next_attempt_at, "
        "count(*) OVER () AS scanned, row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at, id) "
        f"AS k FROM ({window}) AS due) AS ranked WHERE k <= {per_hook}"
    )


@dataclass(frozen=True)
class PickSql:
    """SQLite's claim after the scan: the webhooks (with other workers' leases, ``busy``, and
    their tenant), the tenants (with other workers' leases), then ``Store.claim`` picks in
    Python, holds, leases and reads the bodies."""

    hooks: str
    hooks_limited: str
    tenants: str
    tenant_of: str
    hold: str
    lease: str
    bodies: str


@dataclass(frozen=True)
class QueueSql:
    """``ids(values)`` turns a list into the dialect's list parameter."""

    # SQLite: (id, webhook_id, scanned, 1), the due window. PostgreSQL: the first statement of
    # the claim, which finds the due rows (looking past full endpoints with ``probe`` when it must)
    # and takes the claim locks, and hands what it found to ``take`` (see ``sql.pg_claim``).
    scan: str
    # Each webhook's own next ``per_hook`` due rows (through ``ix_deliveries_webhook_queue``),
    # skipping ``full`` (and on SQLite the webhooks of ``crowded`` tenants): how a claim looks
    # past endpoints at their limit at a cost that grows with the number of webhooks, not with
    # their backlog. SQLite runs it as a second pass; PostgreSQL's ``scan`` holds it.
    probe: str
    unlock: str | None  # after the commit
    # PostgreSQL counts, picks and leases in one statement after ``scan``, the rule ``Claim``
    # applies in Python on SQLite (see ``sql.pg_claim``).
    take: str | None
    # PostgreSQL: the planner settings ``scan`` and ``take`` are planned under, sent first.
    claim_setup: str | None
    pick: PickSql | None  # SQLite's way, where a statement costs no round trip
    # PostgreSQL logs the attempts and finishes their deliveries in one statement over arrays;
    # SQLite runs ``log_attempts`` then ``finish`` as executemany (C loops in the sqlite3 module).
    log_attempts: str
    finish: str | None
    # PostgreSQL: the planner settings a batch of results is planned under, sent first.
    results_setup: str | None
    # (id, enabled, consecutive_failures, failing_since, last_success_at, last_failure_at): on
    # PostgreSQL locked in id order, as every writer of webhooks and then deliveries does.
    lock_hooks: str
    health: str
    disable: str
    # A disabled webhook's waiting deliveries, but not those in flight (their results hold them).
    hold_waiting: str
    # Adds a batch's hourly rollups (see ``storage.results``).
    roll_up: str
    # Wakes listening workers at commit (PostgreSQL only).
    notify: str | None
    is_postgres: bool

    def ids(self, values: Sequence[int]) -> str:
        # Text, not a Python list: psycopg dumps lists element by element in Python.
        return f"{{{','.join(map(str, values))}}}" if self.is_postgres else json.dumps(list(values))


def roll_up_statement(param: str, later: str) -> str:
    """Adds a batch's rows to the hourly rollups: ``param`` formats a parameter (":{}" or
    "%({})s"), ``later`` names the dialect's two-argument maximum."""
    columns = [c.name for c in attempt_rollups.c]
    summed = [c for c in columns if c not in ("webhook_id", "hour", "last_success_at", "last_failure_at")]
    updates = [f"{c} = attempt_rollups.{c} + excluded.{c}" for c in summed] + [
        f"{c} = {later}(COALESCE(attempt_rollups.{c}, excluded.{c}), COALESCE(excluded.{c}, attempt_rollups.{c}))"
        for c in ("last_success_at", "last_failure_at")
    ]
    return (
        f"INSERT INTO attempt_rollups ({', '.join(columns)}) "
        f"VALUES ({', '.join(param.format(c) for c in columns)}) "
        f"ON CONFLICT (webhook_id, hour) DO UPDATE SET {', '.join(updates)}"
    )
