"""PostgreSQL's dispatcher statements: claims in two round trips (scan with claim locks, then
one statement that counts, picks and leases) and results over JSON arrays."""

from __future__ import annotations

from webhook_mcp.storage.sql import (
    ATTEMPT_COLUMNS,
    ATTEMPT_LIST,
    BUSY_ELSEWHERE,
    CLAIM_LOCK_SPACE,
    HOOK_COLUMNS,
    OUTCOME_COLUMNS,
    QueueSql,
    ranked,
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


def _scan(due: str) -> str:
    """Claim locks are session locks so that the ones this claim does not need are let go at
    once: it keeps the oldest webhooks it could lock until they hold ``enough`` rows, and another
    worker claiming at the same moment takes the next ones instead of finding all of them locked.
    The kept locks are let go after the commit (``unlock``). MATERIALIZED: each lock is tried, and
    each let go, exactly once, whatever the plan."""
    return (
        "WITH due AS MATERIALIZED ("
        + ranked(due, "%(per_hook)s")
        # n: the rows this worker could send (its own held deliveries count against the endpoint's
        # limit); m: the rows it could take, queued ones included. Only n counts towards ``enough``.
        + "), usable AS (SELECT g.id, g.first, greatest(0, least(g.n, %(cap)s - coalesce(own.n, 0))) AS n, "
        "least(g.n, %(cap)s + %(ahead)s - coalesce(own.n, 0)) AS m FROM "
        "(SELECT webhook_id AS id, count(*) AS n, min(next_attempt_at) AS first FROM due GROUP BY webhook_id) AS g "
        "LEFT JOIN unnest(%(own_ids)s::integer[], %(own_n)s::integer[]) AS own(id, n) ON own.id = g.id), "
        "tried AS MATERIALIZED (SELECT id, n, first, CASE WHEN m > 0 THEN NOT %(lock)s "
        f"OR pg_try_advisory_lock({CLAIM_LOCK_SPACE}, id) END AS ok FROM usable), "
        "ranked AS MATERIALIZED (SELECT id, ok, coalesce(sum(n) FILTER (WHERE ok) OVER (ORDER BY first, id "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) < %(enough)s AS wanted FROM tried), "
        "spare AS MATERIALIZED (SELECT count(*) AS n FROM ranked WHERE %(lock)s AND ok AND NOT wanted "
        f"AND pg_advisory_unlock({CLAIM_LOCK_SPACE}, id)) "
        "SELECT due.id, due.webhook_id, due.scanned, CASE WHEN ranked.ok IS NULL THEN NULL "
        "WHEN NOT ranked.ok THEN false WHEN ranked.wanted THEN true END "
        "FROM due JOIN ranked ON ranked.id = due.webhook_id CROSS JOIN spare ORDER BY due.next_attempt_at, due.id"
    )


_WINDOW = (
    "SELECT id, webhook_id, next_attempt_at FROM deliveries WHERE state = 'pending' "
    "AND next_attempt_at <= %(now)s AND webhook_id <> ALL(%(full)s::integer[]) "
    "ORDER BY next_attempt_at LIMIT %(window)s"
)
# Read from the webhook's queue index: the planner, estimating rows evenly across webhooks, would
# rather walk the due index and filter the other webhooks out, a walk through the backlog of the
# full ones. ``state`` as a range keeps the due index (state = 'pending') out of its choices, and
# ``<> 'succeeded'`` spells out the queue index's own condition.
_PROBE = (
    "SELECT d.id, d.webhook_id, d.next_attempt_at FROM webhooks AS w CROSS JOIN LATERAL "
    "(SELECT id, webhook_id, next_attempt_at FROM deliveries WHERE webhook_id = w.id AND state >= 'pending' "
    "AND state <= 'pending' AND state <> 'succeeded' AND next_attempt_at <= %(now)s "
    "ORDER BY state, next_attempt_at LIMIT %(per_hook)s) AS d "
    "WHERE w.id <> ALL(%(full)s::integer[]) ORDER BY d.next_attempt_at LIMIT %(window)s"
)

POSTGRES = QueueSql(
    scan=_scan(_WINDOW),
    probe=_scan(_PROBE),
    unlock="SELECT pg_advisory_unlock_all()",
    take=(
        f"WITH h AS MATERIALIZED (SELECT {HOOK_COLUMNS}, x.busy, "
        "%(cap)s - coalesce(own.n, 0) - x.busy AS room, "
        "least(%(ahead)s, greatest(0, %(cap)s - x.busy)) AS ahead FROM webhooks AS w CROSS JOIN LATERAL (SELECT CASE "
        "WHEN %(lock)s THEN "
        + BUSY_ELSEWHERE.format(hint="", owner="%(owner)s", now="%(now)s").removesuffix(" AS busy")
        + " ELSE 0 END AS busy) AS x "
        "LEFT JOIN unnest(%(own_ids)s::integer[], %(own_n)s::integer[]) AS own(id, n) ON own.id = w.id "
        "WHERE w.id = ANY(%(hooks)s::integer[])), "
        "c AS MATERIALIZED (SELECT c.id, c.webhook_id, c.n, "
        "row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.n) AS k "
        "FROM unnest(%(ids)s::bigint[], %(id_hooks)s::integer[]) WITH ORDINALITY AS c(id, webhook_id, n)), "
        # Rows to send, oldest first; then rows to queue behind this worker's sends to webhooks
        # whose room it filled.
        "to_send AS MATERIALIZED (SELECT c.id, c.webhook_id, 0 AS ahead FROM c JOIN h ON h.id = c.webhook_id "
        "WHERE h.enabled AND c.k <= h.room ORDER BY c.n LIMIT %(limit)s), "
        "filled AS MATERIALIZED (SELECT h.id, h.room, h.ahead FROM h LEFT JOIN (SELECT webhook_id, count(*) AS n "
        "FROM to_send GROUP BY webhook_id) AS s ON s.webhook_id = h.id "
        "WHERE %(ahead_limit)s > 0 AND h.enabled AND h.ahead > 0 AND h.room <= coalesce(s.n, 0)), "
        "picked AS MATERIALIZED (SELECT * FROM to_send UNION ALL (SELECT c.id, c.webhook_id, 1 FROM c "
        "JOIN filled AS f ON f.id = c.webhook_id WHERE c.k > f.room AND c.k <= f.room + f.ahead "
        "ORDER BY c.n LIMIT %(ahead_limit)s)), "
        "held AS (UPDATE deliveries SET state = 'held', lease_owner = NULL, updated_at = %(now)s "
        "WHERE id IN (SELECT c.id FROM c JOIN h ON h.id = c.webhook_id WHERE NOT h.enabled)), "
        # Re-checked under the row lock: another worker may have taken a row since the scan.
        "leased AS (UPDATE deliveries AS d SET next_attempt_at = %(until)s, lease_owner = %(owner)s, "
        "attempts = d.attempts + 1, updated_at = %(now)s FROM events AS e "
        "WHERE d.id IN (SELECT id FROM deliveries WHERE id IN (SELECT id FROM picked) AND state = 'pending' "
        "AND next_attempt_at <= %(now)s FOR UPDATE SKIP LOCKED) AND e.id = d.event_id "
        "RETURNING d.id, d.webhook_id, d.event_id, d.attempts, e.type, e.body) "
        "SELECT l.id, l.webhook_id, l.event_id, l.attempts, l.type, l.body, h.url, h.secret, h.previous_secret, "
        "h.previous_secret_expires_at, p.ahead::bigint, NULL::bigint FROM leased AS l JOIN h ON h.id = l.webhook_id "
        "JOIN picked AS p ON p.id = l.id "
        "UNION ALL SELECT NULL, h.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        "h.room + h.ahead - (SELECT count(*) FROM picked AS p WHERE p.webhook_id = h.id), h.busy FROM h"
    ),
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
