"""The dispatcher's hot statements as plain driver SQL, one set per dialect.

They run many times a second, so they are fixed texts with list parameters (PostgreSQL arrays,
SQLite JSON arrays) rather than SQLAlchemy statements with expanding ``IN`` lists: a fixed text is
parsed once and, on PostgreSQL, prepared once per connection, and no per-call compile is paid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

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
_ATTEMPT_LIST = ", ".join(ATTEMPT_COLUMNS)

_HOOK_COLUMNS = "w.id, w.url, w.secret, w.enabled, w.previous_secret, w.previous_secret_expires_at"
# Other workers' unexpired leases on a webhook, counted through the small partial index.
_BUSY_ELSEWHERE = (
    "(SELECT count(*) FROM deliveries AS b{hint} WHERE b.webhook_id = w.id AND b.lease_owner IS NOT NULL "
    "AND b.lease_owner <> {owner} AND b.next_attempt_at > {now}) AS busy"
)


def _ranked(window: str, per_hook: str) -> str:
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
    """SQLite's claim after the scan: the webhooks (with other workers' leases, ``busy``), then
    ``Store.claim`` picks in Python, holds, leases and reads the bodies."""

    hooks: str
    hooks_limited: str
    hold: str
    lease: str
    bodies: str


@dataclass(frozen=True)
class QueueSql:
    """``ids(values)`` turns a list into the dialect's list parameter."""

    # (id, webhook_id, scanned, locked): the due window; ``locked`` is true for webhooks this
    # claim may take from (their claim lock held when ``lock``), false for webhooks another claimer
    # holds, null for webhooks not needed this time. Whoever held a lock before has committed
    # before ``hooks_limited`` counts the leases.
    scan: str
    unlock: str | None  # after the commit
    # PostgreSQL picks and leases in one statement, the rule ``Store.claim`` applies in Python on
    # SQLite: per webhook, the oldest candidates up to its room (its limit less this worker's own
    # held deliveries and the other workers' leases, counted after the scan took the locks), then
    # up to ``ahead`` more to queue behind its sends (no more than it may send: its limit less the
    # other workers' leases), only where it filled the room; at most ``limit`` to send and
    # ``ahead_limit`` to queue in all, oldest first; candidates of disabled webhooks are held.
    # Rows: the leases
    # (id, webhook_id, event_id, attempts, type, body, url, secret, previous_secret,
    # previous_secret_expires_at, 1 if queued ahead else 0, NULL), then per webhook (NULL, id,
    # NULL x 8, room left with ``ahead``, busy).
    take: str | None
    pick: PickSql | None  # SQLite's way, where a statement costs no round trip
    # PostgreSQL logs the attempts and finishes their deliveries in one statement over arrays;
    # SQLite runs ``log_attempts`` then ``finish`` as executemany (C loops in the sqlite3 module).
    log_attempts: str
    finish: str | None
    # (id, enabled, consecutive_failures, failing_since, last_success_at, last_failure_at): on
    # PostgreSQL locked in id order, as every writer of webhooks and then deliveries does.
    lock_hooks: str
    health: str
    disable: str
    # A disabled webhook's waiting deliveries, but not those in flight (their results hold them).
    hold_waiting: str
    is_postgres: bool

    def ids(self, values: Sequence[int]) -> str:
        # Text, not a Python list: psycopg dumps lists element by element in Python.
        return f"{{{','.join(map(str, values))}}}" if self.is_postgres else json.dumps(list(values))


POSTGRES = QueueSql(
    # Claim locks are session locks so that the ones this claim does not need are let go at once:
    # it keeps the oldest webhooks it could lock until they hold ``enough`` rows, and another
    # worker claiming at the same moment takes the next ones instead of finding all of them
    # locked. The kept locks are let go after the commit (``unlock``). MATERIALIZED: each lock is
    # tried, and each let go, exactly once, whatever the plan.
    scan=(
        "WITH due AS MATERIALIZED ("
        + _ranked(
            "SELECT id, webhook_id, next_attempt_at FROM deliveries WHERE state = 'pending' "
            "AND next_attempt_at <= %(now)s AND webhook_id <> ALL(%(full)s::integer[]) "
            "ORDER BY next_attempt_at LIMIT %(window)s",
            "%(per_hook)s",
        )
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
    ),
    unlock="SELECT pg_advisory_unlock_all()",
    take=(
        f"WITH h AS MATERIALIZED (SELECT {_HOOK_COLUMNS}, x.busy, "
        "%(cap)s - coalesce(own.n, 0) - x.busy AS room, "
        "least(%(ahead)s, greatest(0, %(cap)s - x.busy)) AS ahead FROM webhooks AS w CROSS JOIN LATERAL (SELECT CASE "
        "WHEN %(lock)s THEN "
        + _BUSY_ELSEWHERE.format(hint="", owner="%(owner)s", now="%(now)s").removesuffix(" AS busy")
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
        f"logged AS (INSERT INTO delivery_attempts ({_ATTEMPT_LIST}) SELECT {_ATTEMPT_LIST} FROM r ORDER BY n), "
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
    is_postgres=True,
)

_SQLITE_LIST = "(SELECT value FROM json_each({}))"

SQLITE = QueueSql(
    # The claim's transaction is SQLite's only writer: no lock to take.
    unlock=None,
    take=None,
    scan=(
        "SELECT id, webhook_id, scanned, 1 FROM ("
        + _ranked(
            "SELECT id, webhook_id, next_attempt_at FROM deliveries WHERE state = 'pending' "
            f"AND next_attempt_at <= :now AND webhook_id NOT IN {_SQLITE_LIST.format(':full')} "
            "ORDER BY next_attempt_at LIMIT :window",
            ":per_hook",
        )
        + ") ORDER BY next_attempt_at, id"
    ),
    pick=PickSql(
        hooks=f"SELECT {_HOOK_COLUMNS}, 0 AS busy FROM webhooks AS w WHERE w.id IN {_SQLITE_LIST.format(':ids')}",
        hooks_limited=(
            f"SELECT {_HOOK_COLUMNS}, "
            + _BUSY_ELSEWHERE.format(hint=" INDEXED BY ix_deliveries_leased", owner=":owner", now=":now")
            + f" FROM webhooks AS w WHERE w.id IN {_SQLITE_LIST.format(':ids')}"
        ),
        hold=(
            "UPDATE deliveries SET state = 'held', lease_owner = NULL, updated_at = :now "
            f"WHERE id IN {_SQLITE_LIST.format(':ids')}"
        ),
        lease=(
            "UPDATE deliveries SET next_attempt_at = :until, lease_owner = :owner, attempts = attempts + 1, "
            f"updated_at = :now WHERE id IN {_SQLITE_LIST.format(':ids')} "
            "RETURNING id, webhook_id, event_id, attempts"
        ),
        bodies=f"SELECT id, type, body FROM events WHERE id IN {_SQLITE_LIST.format(':ids')}",
    ),
    log_attempts=(
        f"INSERT INTO delivery_attempts ({_ATTEMPT_LIST}) VALUES ({', '.join(':' + c for c in ATTEMPT_COLUMNS)})"
    ),
    finish=(
        "UPDATE deliveries SET lease_owner = NULL, state = :next_state, next_attempt_at = :next_attempt_at, "
        "last_status = :status_code, last_error = :error, updated_at = :now, completed_at = :completed_at "
        "WHERE id = :delivery_id"
    ),
    lock_hooks=(
        "SELECT id, enabled, consecutive_failures, failing_since, last_success_at, last_failure_at FROM webhooks "
        f"WHERE id IN {_SQLITE_LIST.format(':ids')} ORDER BY id"
    ),
    health=(
        "UPDATE webhooks SET consecutive_failures = :consecutive_failures, failing_since = :failing_since, "
        "last_success_at = :last_success_at, last_failure_at = :last_failure_at WHERE id = :id"
    ),
    disable=(
        "UPDATE webhooks SET enabled = 0, disabled_reason = :reason, disabled_at = :now, updated_at = :now "
        "WHERE id = :id"
    ),
    hold_waiting=(
        "UPDATE deliveries SET state = 'held', lease_owner = NULL, updated_at = :now "
        f"WHERE webhook_id IN {_SQLITE_LIST.format(':ids')} AND state = 'pending' "
        "AND NOT (lease_owner IS NOT NULL AND next_attempt_at > :now)"
    ),
    is_postgres=False,
)
