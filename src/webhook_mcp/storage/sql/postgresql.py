"""PostgreSQL's dispatcher statements: claims in one round trip (``sql.pg_claim``) and results
over JSON arrays."""

from __future__ import annotations

from webhook_mcp.storage.sql import (
    ATTEMPT_COLUMNS,
    ATTEMPT_LIST,
    OUTCOME_COLUMNS,
    QueueSql,
    pg_claim,
    roll_up_statement,
)

_PG_TYPES = {
    "webhook_id": "integer",
    "delivery_id": "bigint",
    "event_id": "text",
    "event_type": "text",
    "attempt_number": "integer",
    "is_test": "boolean",
    "created_at": "float8",
    "status_code": "integer",
    "response_ms": "float8",
    "success": "boolean",
    "error": "text",
    "response_excerpt": "text",
    "next_state": "text",
    "next_attempt_at": "float8",
    "completed_at": "float8",
}
assert tuple(_PG_TYPES) == ATTEMPT_COLUMNS + OUTCOME_COLUMNS


POSTGRES = QueueSql(
    scan=pg_claim.SCAN,
    probe=pg_claim.probe("w.id <> ALL(%(full)s::integer[])"),
    unlock=pg_claim.UNLOCK,
    take=pg_claim.TAKE,
    claim_setup=pg_claim.SETUP,
    pick=None,
    # One JSON document for the whole batch (encoded in C, parsed in C); attempt ids follow the
    # batch's order; a delivery twice in one batch ends as its last record says.
    log_attempts=(
        "WITH r AS (SELECT * FROM ROWS FROM (json_to_recordset(%(rows)s::json) "
        f"AS ({', '.join(f'{c} {t}' for c, t in _PG_TYPES.items())})) "
        f"WITH ORDINALITY AS r({', '.join(_PG_TYPES)}, n)), "
        f"logged AS (INSERT INTO delivery_attempts ({ATTEMPT_LIST}) SELECT {ATTEMPT_LIST} FROM r ORDER BY n), "
        "last AS (SELECT DISTINCT ON (delivery_id) * FROM r WHERE delivery_id IS NOT NULL "
        "ORDER BY delivery_id, n DESC) "
        "UPDATE deliveries AS d SET lease_owner = NULL, state = last.next_state, "
        "next_attempt_at = last.next_attempt_at, last_status = last.status_code, last_error = last.error, "
        "updated_at = %(now)s, completed_at = last.completed_at FROM last WHERE d.id = last.delivery_id"
    ),
    finish=None,
    # A batch's deliveries are found by key, one lookup per result, whatever the table looked like
    # when the statement was planned: a plan made while it was small (and kept for the connection)
    # or one that trusts a never-analysed table's size would scan every delivery to finish a few.
    results_setup=(
        "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), "
        "set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true)"
    ),
    lock_hooks=(
        "SELECT id, enabled, consecutive_failures, failing_since, last_success_at, last_failure_at FROM webhooks "
        "WHERE id = ANY(%(ids)s::integer[]) ORDER BY id FOR NO KEY UPDATE"
    ),
    health=(
        "UPDATE webhooks SET consecutive_failures = %(consecutive_failures)s, failing_since = %(failing_since)s, "
        "last_success_at = %(last_success_at)s, last_failure_at = %(last_failure_at)s WHERE id = %(id)s"
    ),
    disable=(
        "UPDATE webhooks SET enabled = false, disabled_reason = %(reason)s, disabled_at = %(now)s, "
        "updated_at = %(now)s WHERE id = %(id)s"
    ),
    hold_waiting=(
        "UPDATE deliveries SET state = 'held', lease_owner = NULL, updated_at = %(now)s "
        "WHERE webhook_id = ANY(%(ids)s::integer[]) AND state = 'pending' "
        "AND NOT (lease_owner IS NOT NULL AND next_attempt_at > %(now)s)"
    ),
    roll_up=roll_up_statement("%({})s", "GREATEST"),
    notify="SELECT pg_notify(%(channel)s, '')",
    is_postgres=True,
)
