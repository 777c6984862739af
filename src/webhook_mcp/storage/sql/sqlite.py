"""SQLite's dispatcher statements: one writer, so no claim locks; the claim picks in Python
(a statement costs no round trip) and results are written with executemany."""

from __future__ import annotations

from webhook_mcp.storage.sql import (
    ATTEMPT_COLUMNS,
    ATTEMPT_LIST,
    BUSY_ELSEWHERE,
    HOOK_COLUMNS,
    PickSql,
    QueueSql,
    ranked,
    roll_up_statement,
)

_SQLITE_LIST = "(SELECT value FROM json_each({}))"


def _scan(due: str) -> str:
    return f"SELECT id, webhook_id, scanned, 1 FROM ({ranked(due, ':per_hook')}) ORDER BY next_attempt_at, id"


SQLITE = QueueSql(
    # The claim's transaction is SQLite's only writer: no lock to take.
    unlock=None,
    take=None,
    claim_setup=None,
    scan=_scan(
        "SELECT id, webhook_id, next_attempt_at FROM deliveries WHERE state = 'pending' "
        f"AND next_attempt_at <= :now AND webhook_id NOT IN {_SQLITE_LIST.format(':full')} "
        "ORDER BY next_attempt_at LIMIT :window"
    ),
    # No LATERAL in SQLite: a correlated IN per webhook, each read from the webhook's queue index.
    probe=_scan(
        "SELECT d.id, d.webhook_id, d.next_attempt_at FROM webhooks AS w JOIN deliveries AS d ON d.id IN "
        "(SELECT x.id FROM deliveries AS x WHERE x.webhook_id = w.id AND x.state = 'pending' "
        "AND x.next_attempt_at <= :now ORDER BY x.next_attempt_at LIMIT :per_hook) "
        f"WHERE w.id NOT IN {_SQLITE_LIST.format(':full')} AND w.tenant_id NOT IN {_SQLITE_LIST.format(':crowded')} "
        "ORDER BY d.next_attempt_at LIMIT :window"
    ),
    pick=PickSql(
        hooks=(
            f"SELECT {HOOK_COLUMNS}, 0 AS busy, w.tenant_id FROM webhooks AS w "
            f"WHERE w.id IN {_SQLITE_LIST.format(':ids')}"
        ),
        hooks_limited=(
            f"SELECT {HOOK_COLUMNS}, "
            + BUSY_ELSEWHERE.format(hint=" INDEXED BY ix_deliveries_leased", owner=":owner", now=":now")
            + f", w.tenant_id FROM webhooks AS w WHERE w.id IN {_SQLITE_LIST.format(':ids')}"
        ),
        tenants=(
            "SELECT t.value, (SELECT count(*) FROM webhooks AS tw JOIN deliveries AS b INDEXED BY ix_deliveries_leased "
            "ON b.webhook_id = tw.id WHERE tw.tenant_id = t.value AND b.lease_owner IS NOT NULL "
            "AND b.lease_owner <> :owner AND b.next_attempt_at > :now) FROM json_each(:ids) AS t"
        ),
        tenant_of=f"SELECT id, tenant_id FROM webhooks WHERE id IN {_SQLITE_LIST.format(':ids')}",
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
        f"INSERT INTO delivery_attempts ({ATTEMPT_LIST}) VALUES ({', '.join(':' + c for c in ATTEMPT_COLUMNS)})"
    ),
    finish=(
        "UPDATE deliveries SET lease_owner = NULL, state = :next_state, next_attempt_at = :next_attempt_at, "
        "last_status = :status_code, last_error = :error, updated_at = :now, completed_at = :completed_at "
        "WHERE id = :delivery_id"
    ),
    results_setup=None,
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
    roll_up=roll_up_statement(":{}", "MAX"),
    notify=None,
    is_postgres=False,
)
