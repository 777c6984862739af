"""PostgreSQL's claim in one round trip: two statements sent together in one pipeline, with the
transaction's ``BEGIN`` and ``COMMIT``.

The first (``SCAN``) finds the due rows and takes the claim locks; the second (``TAKE``) counts
the other workers' leases, picks and leases. They must be two statements: a statement sees the
database as it was when it started, so leases committed by the worker that held a lock until
just before this claim took it would be invisible to a count made in the same statement. The
first hands its rows to the second through transaction-local settings, so the second need not
wait for them to travel to the client and back.

Claim locks are per webhook, or per tenant when tenants have a cap on deliveries in flight (the
tenant's lock then stands for all its webhooks): whoever holds it counts and leases alone.
"""

from __future__ import annotations

from webhook_mcp.storage.sql import BUSY_ELSEWHERE, CLAIM_LOCK_SPACE, HOOK_COLUMNS

TENANT_LOCK_SPACE = CLAIM_LOCK_SPACE + 1
NO_CAP = 2_147_483_647

_BUSY = BUSY_ELSEWHERE.format(hint="", owner="%(owner)s", now="%(now)s").removesuffix(" AS busy")
# The other workers' unexpired leases on the webhooks of tenant ``t.tenant_id``.
_TENANT_BUSY = (
    "(SELECT count(*) FROM webhooks AS tw JOIN deliveries AS b ON b.webhook_id = tw.id "
    "WHERE tw.tenant_id = t.tenant_id AND b.lease_owner IS NOT NULL AND b.lease_owner <> %(owner)s "
    "AND b.next_attempt_at > %(now)s)"
)
_OWN = (
    "own AS MATERIALIZED (SELECT o.id, o.n, w.tenant_id FROM unnest(%(own_ids)s::integer[], "
    "%(own_n)s::integer[]) AS o(id, n) JOIN webhooks AS w ON w.id = o.id)"
)
# Per tenant: the other workers' leases and this worker's own deliveries, hence its room.
_TENANTS = (
    "SELECT t.tenant_id, t.busy, CASE WHEN %(tcap)s::integer IS NULL THEN " + str(NO_CAP) + " "
    "ELSE %(tcap)s::integer - t.busy - coalesce((SELECT sum(own.n) FROM own WHERE own.tenant_id = t.tenant_id), 0) "
    "END AS room FROM (SELECT t.tenant_id, CASE WHEN %(tcap)s::integer IS NULL THEN 0 ELSE "
    + _TENANT_BUSY
    + " END AS busy FROM (SELECT DISTINCT tenant_id FROM {hooks}) AS t) AS t"
)


def probe(skip: str) -> str:
    """Each webhook's next ``per_hook`` due rows, read from its own queue (``ix_deliveries_webhook_queue``):
    how a claim looks past endpoints at their limit at a cost that grows with the number of
    webhooks, not with their backlog. The planner, estimating rows evenly across webhooks, would
    rather walk the due index and filter the other webhooks out, a walk through the backlog of
    the full ones: ``state`` as a range keeps the due index out of its choices, and ``<> 'succeeded'``
    spells out the queue index's own condition. ``skip``: a condition on ``w``, the webhooks to skip."""
    return (
        "SELECT d.id, d.webhook_id, d.next_attempt_at FROM webhooks AS w CROSS JOIN LATERAL "
        "(SELECT id, webhook_id, next_attempt_at FROM deliveries WHERE webhook_id = w.id AND state >= 'pending' "
        "AND state <= 'pending' AND state <> 'succeeded' AND next_attempt_at <= %(now)s "
        "ORDER BY state, next_attempt_at LIMIT %(per_hook)s) AS d "
        f"WHERE {skip} "
        "ORDER BY d.next_attempt_at LIMIT %(window)s"
    )


# The window of the oldest due rows, each webhook's ranked; what the claim can tell of the
# webhooks there before it holds their locks (the other workers' leases as they were when it
# started): which are full; and whether the window holds too little else (``need``), in which
# case it reads each other webhook's own queue instead, in the same statement (``deeper``).
_WINDOW = (
    "win AS MATERIALIZED (SELECT id, webhook_id, next_attempt_at, row_number() OVER (PARTITION BY webhook_id "
    "ORDER BY next_attempt_at, id) AS k FROM (SELECT id, webhook_id, next_attempt_at FROM deliveries "
    "WHERE state = 'pending' AND next_attempt_at <= %(now)s ORDER BY next_attempt_at LIMIT %(window)s) AS w), "
    "seen AS MATERIALIZED (SELECT g.id, g.n, w.tenant_id, x.busy, %(cap)s - coalesce(o.n, 0) - x.busy AS room, "
    "least(%(ahead)s, greatest(0, %(cap)s - x.busy)) AS extra FROM (SELECT webhook_id AS id, "
    "count(*) FILTER (WHERE k <= %(per_hook)s) AS n FROM win GROUP BY webhook_id) AS g "
    "JOIN webhooks AS w ON w.id = g.id CROSS JOIN LATERAL (SELECT CASE WHEN %(lock)s THEN "
    + _BUSY
    + " ELSE 0 END AS busy OFFSET 0) AS x LEFT JOIN own AS o ON o.id = g.id), "
    "tenants AS MATERIALIZED (" + _TENANTS.format(hooks="seen") + "), "
    # Webhooks at their limit or whose tenant is at its cap; tenants whose rows in the window
    # fill their room (so the window serves them, and a deeper look skips them).
    "stuck AS MATERIALIZED (SELECT s.id, s.room + s.extra <= 0 AND s.busy > 0 OR t.room <= 0 AND t.busy > 0 "
    "AS blocked FROM seen AS s JOIN tenants AS t ON t.tenant_id = s.tenant_id "
    "WHERE s.room + s.extra <= 0 OR t.room <= 0), "
    "sendable AS MATERIALIZED (SELECT t.tenant_id, least(t.room, sum(least(s.n, greatest(0, s.room)))) AS n, "
    "t.room <= sum(least(s.n, greatest(0, s.room))) AS filled FROM seen AS s "
    "JOIN tenants AS t ON t.tenant_id = s.tenant_id WHERE s.id NOT IN (SELECT id FROM stuck) "
    "GROUP BY t.tenant_id, t.room), "
    "crowded AS MATERIALIZED (SELECT tenant_id FROM tenants WHERE room <= 0 "
    "UNION SELECT tenant_id FROM sendable WHERE filled), "
    "need AS MATERIALIZED (SELECT %(deeper)s AND (SELECT count(*) FROM win) >= %(window)s "
    "AND EXISTS (SELECT FROM stuck UNION ALL SELECT FROM crowded) "
    "AND (coalesce((SELECT sum(n) FROM sendable), 0) < %(enough)s OR %(tcap)s::integer IS NOT NULL) AS yes), "
    "deeper AS MATERIALIZED ("
    # (``need`` as a one-time filter: when false, nothing below it runs.)
    + probe(
        "(SELECT yes FROM need) AND w.id NOT IN (SELECT id FROM stuck) "
        "AND w.tenant_id NOT IN (SELECT tenant_id FROM crowded)"
    )
    + "), "
    # Looking deeper, the window still serves the tenants whose room it fills.
    "due AS MATERIALIZED (SELECT id, webhook_id, next_attempt_at FROM win WHERE k <= %(per_hook)s "
    "AND (NOT (SELECT yes FROM need) OR webhook_id IN (SELECT s.id FROM seen AS s JOIN sendable AS t "
    "ON t.tenant_id = s.tenant_id WHERE t.filled AND s.id NOT IN (SELECT id FROM stuck))) "
    "UNION ALL SELECT id, webhook_id, next_attempt_at FROM deeper)"
)
_LOCK_KEY = "CASE WHEN %(tcap)s::integer IS NULL THEN {fn}(" + str(CLAIM_LOCK_SPACE) + ", id) ELSE {fn}("
_LOCK_KEY += str(TENANT_LOCK_SPACE) + ", tenant_id) END"

# Claim locks are session locks so that the ones this claim does not need are let go at once: it
# keeps the oldest webhooks it could lock until they hold ``enough`` rows, and another worker
# claiming at the same moment takes the next ones instead of finding all of them locked. The kept
# locks are let go after the commit (``UNLOCK``). MATERIALIZED: each lock is tried, and each let go,
# exactly once, whatever the plan (a tenant's lock, tried once per webhook, is taken as often).
SCAN = (
    "WITH " + _OWN + ", " + _WINDOW + ", "
    # n: the rows this worker could send (its own held deliveries count against the endpoint's
    # limit); m: the rows it could take, queued ones included. Only n counts towards ``enough``.
    # A tenant's webhooks share its room (as far as the window told it), oldest first.
    "usable AS (SELECT u.id, u.tenant_id, u.first, greatest(0, least(u.n, u.room - coalesce(sum(u.n) OVER "
    "(PARTITION BY u.tenant_id ORDER BY u.first, u.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) "
    "AS n, u.m FROM (SELECT g.id, g.tenant_id, g.first, greatest(0, least(g.n, %(cap)s - coalesce(own.n, 0))) AS n, "
    "least(g.n, %(cap)s + %(ahead)s - coalesce(own.n, 0)) AS m, coalesce(t.room, " + str(NO_CAP) + ") AS room "
    "FROM (SELECT due.webhook_id AS id, w.tenant_id, "
    "count(*) AS n, min(due.next_attempt_at) AS first FROM due JOIN webhooks AS w ON w.id = due.webhook_id "
    "GROUP BY due.webhook_id, w.tenant_id) AS g LEFT JOIN own ON own.id = g.id "
    "LEFT JOIN tenants AS t ON t.tenant_id = g.tenant_id) AS u), "
    "tried AS MATERIALIZED (SELECT id, tenant_id, n, first, CASE WHEN m > 0 THEN NOT %(lock)s OR "
    + _LOCK_KEY.format(fn="pg_try_advisory_lock")
    + " END AS ok FROM usable), "
    "ranked AS MATERIALIZED (SELECT id, tenant_id, ok, coalesce(sum(n) FILTER (WHERE ok) OVER (ORDER BY first, id "
    "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) < %(enough)s OR %(tcap)s::integer IS NOT NULL "
    "AS wanted FROM tried), "
    "spare AS MATERIALIZED (SELECT count(*) AS n FROM ranked WHERE %(lock)s AND ok AND NOT wanted AND "
    + _LOCK_KEY.format(fn="pg_advisory_unlock")
    + ") "
    # For ``TAKE``: the rows of the webhooks this claim holds (in due order), and the webhooks
    # with due work it could not take because another worker is claiming from them or holds
    # their slots.
    "SELECT set_config('webhook_mcp.claim_ids', coalesce(array_agg(due.id ORDER BY due.next_attempt_at, due.id) "
    "FILTER (WHERE ranked.ok AND ranked.wanted), '{}')::text, true), "
    "set_config('webhook_mcp.claim_hooks', coalesce(array_agg(due.webhook_id ORDER BY due.next_attempt_at, due.id) "
    "FILTER (WHERE ranked.ok AND ranked.wanted), '{}')::text, true), "
    "set_config('webhook_mcp.claim_blocked', (coalesce(array_agg(DISTINCT due.webhook_id) "
    "FILTER (WHERE NOT ranked.ok), '{}') || (SELECT coalesce(array_agg(id), '{}') FROM stuck "
    "WHERE blocked AND (SELECT yes FROM need)))::text, true), "
    "max(spare.n) FROM due JOIN ranked ON ranked.id = due.webhook_id CROSS JOIN spare"
)

# Per webhook, the oldest candidates up to its room (its limit less this worker's own held
# deliveries and the other workers' leases, counted now that the scan holds the locks), and per
# tenant up to the tenant's room likewise; then up to ``ahead`` more to queue behind its sends (no
# more than it may send: its limit less the other workers' leases), only where it filled the
# room, and within the tenant's room; at most ``limit`` to send and ``ahead_limit`` to queue in
# all, oldest first; candidates of disabled webhooks are held.
_PICK = (
    "c AS MATERIALIZED (SELECT c.id, c.webhook_id, c.n, row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.n) "
    "AS k FROM unnest(current_setting('webhook_mcp.claim_ids')::bigint[], "
    "current_setting('webhook_mcp.claim_hooks')::integer[]) WITH ORDINALITY AS c(id, webhook_id, n)), "
    f"h AS MATERIALIZED (SELECT {HOOK_COLUMNS}, w.tenant_id, x.busy, "
    "%(cap)s - coalesce(own.n, 0) - x.busy AS room, least(%(ahead)s, greatest(0, %(cap)s - x.busy)) AS ahead "
    "FROM webhooks AS w CROSS JOIN LATERAL (SELECT CASE WHEN %(lock)s THEN "
    + _BUSY
    + " ELSE 0 END AS busy OFFSET 0) AS x LEFT JOIN own ON own.id = w.id WHERE w.id IN (SELECT webhook_id FROM c)), "
    "t AS MATERIALIZED (" + _TENANTS.format(hooks="h") + "), "
    "e AS MATERIALIZED (SELECT c.id, c.webhook_id, c.n, h.tenant_id, row_number() OVER (PARTITION BY h.tenant_id "
    "ORDER BY c.n) AS tk FROM c JOIN h ON h.id = c.webhook_id WHERE h.enabled AND c.k <= h.room), "
    "to_send AS MATERIALIZED (SELECT e.id, e.webhook_id, e.tenant_id, 0 AS ahead FROM e "
    "JOIN t ON t.tenant_id = e.tenant_id WHERE e.tk <= t.room ORDER BY e.tk, e.n LIMIT %(limit)s), "
    "filled AS MATERIALIZED (SELECT h.id, h.room, h.ahead FROM h LEFT JOIN (SELECT webhook_id, count(*) AS n "
    "FROM to_send GROUP BY webhook_id) AS s ON s.webhook_id = h.id "
    "WHERE %(ahead_limit)s > 0 AND h.enabled AND h.ahead > 0 AND h.room <= coalesce(s.n, 0)), "
    "q AS MATERIALIZED (SELECT c.id, c.webhook_id, c.n, h.tenant_id, row_number() OVER (PARTITION BY h.tenant_id "
    "ORDER BY c.n) AS tk FROM c JOIN filled AS f ON f.id = c.webhook_id JOIN h ON h.id = c.webhook_id "
    "WHERE c.k > f.room AND c.k <= f.room + f.ahead), "
    "picked AS MATERIALIZED (SELECT id, webhook_id, ahead FROM to_send UNION ALL (SELECT q.id, q.webhook_id, 1 "
    "FROM q JOIN t ON t.tenant_id = q.tenant_id WHERE q.tk <= t.room - (SELECT count(*) FROM to_send AS s "
    "WHERE s.tenant_id = q.tenant_id) ORDER BY q.n LIMIT %(ahead_limit)s)), "
    "held AS (UPDATE deliveries SET state = 'held', lease_owner = NULL, updated_at = %(now)s "
    "WHERE id IN (SELECT c.id FROM c JOIN h ON h.id = c.webhook_id WHERE NOT h.enabled)), "
    # Re-checked under the row lock: another worker may have taken a row since the scan. Each
    # picked row is locked by its key alone, and only then checked (``OFFSET 0`` keeps the checks
    # out of the lookup): with the checks beside the key, a generic plan made while the table
    # looked small would walk an index of due rows (and their dead versions) once per row picked.
    "leased AS (UPDATE deliveries AS d SET next_attempt_at = %(until)s, lease_owner = %(owner)s, "
    "attempts = d.attempts + 1, updated_at = %(now)s FROM events AS e "
    "WHERE d.id IN (SELECT r.id FROM picked AS p CROSS JOIN LATERAL (SELECT id, state, next_attempt_at "
    "FROM deliveries WHERE id = p.id OFFSET 0 FOR UPDATE SKIP LOCKED) AS r "
    "WHERE r.state = 'pending' AND r.next_attempt_at <= %(now)s) "
    "AND e.id = d.event_id "
    "RETURNING d.id, d.webhook_id, d.event_id, d.attempts, e.type, e.body)"
)

# Rows: the leases (id, webhook_id, event_id, attempts, type, body, url, secret, previous_secret,
# previous_secret_expires_at, 1 if queued ahead else 0, NULL, NULL); then per webhook counted
# (NULL, id, NULL x 8, room left with ``ahead``, busy, blocked); then per webhook another worker
# was claiming from (NULL, id, NULL x 10, true).
TAKE = (
    "WITH "
    + _OWN
    + ", "
    + _PICK
    + " SELECT l.id, l.webhook_id, l.event_id, l.attempts, l.type, l.body, h.url, h.secret, h.previous_secret, "
    "h.previous_secret_expires_at, p.ahead::bigint, NULL::bigint, NULL::boolean FROM leased AS l "
    "JOIN h ON h.id = l.webhook_id JOIN picked AS p ON p.id = l.id "
    "UNION ALL SELECT NULL, h.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, r.room_left, h.busy, "
    "r.room_left <= 0 AND h.busy > 0 OR t.room - (SELECT count(*) FROM picked AS p "
    "JOIN h AS ph ON ph.id = p.webhook_id WHERE ph.tenant_id = h.tenant_id) <= 0 AND t.busy > 0 "
    "FROM h JOIN t ON t.tenant_id = h.tenant_id "
    "CROSS JOIN LATERAL (SELECT h.room + h.ahead - (SELECT count(*) FROM picked AS p WHERE p.webhook_id = h.id) "
    "AS room_left) AS r "
    "UNION ALL SELECT NULL, b.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true "
    "FROM unnest(current_setting('webhook_mcp.claim_blocked')::integer[]) AS b(id)"
)

UNLOCK = "SELECT pg_advisory_unlock_all()"

# Planning these statements costs more than running them, and their plans do not depend on the
# values (small windows read through indexes), so each connection plans them once, generically.
# Often when it starts, on a table still small and never analysed: a sequential scan is then the
# cheapest way to find a few rows, and the plan would keep reading the whole table (dead rows
# included) once a backlog has grown. Every scan here has an index made for it; without
# sequential scans the planner takes those, whatever the table looked like. The cost it then
# gives a sequential scan left in a branch that never runs would make it compile the statements
# to machine code (seconds, for a statement that runs in a millisecond): no JIT either.
SETUP = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), "
    "set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)"
)
