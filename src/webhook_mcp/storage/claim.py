"""One claim inside one transaction: scan and lock, count the other workers' leases (per webhook
and per tenant), pick what to send, queue ahead, lease. ``QueueQueries.claim`` says what a claim
promises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook_mcp.storage.base import MAX_WEBHOOK_ID
from webhook_mcp.storage.pipeline import HotTransaction
from webhook_mcp.storage.records import ClaimedDelivery
from webhook_mcp.storage.sql import QueueSql


@dataclass(frozen=True)
class ClaimRequest:
    owner: str
    limit: int
    now: float
    lease: float
    per_endpoint: int | None
    own: Mapping[int, int]  # this worker's deliveries queued or being sent, per webhook
    ahead: int
    ahead_limit: int
    look_past_full: bool
    tenant_cap: int | None = None


@dataclass
class _Taken:
    """What the claim has learned and taken so far."""

    hooks: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # SQLite: the webhook rows
    room: dict[int, int] = field(default_factory=dict)  # with ``extra``
    extra: dict[int, int] = field(default_factory=dict)  # rows to queue ahead (SQLite)
    busy: dict[int, int] = field(default_factory=dict)  # the other workers' leases
    picked: list[int] = field(default_factory=list)  # SQLite: to lease at the end
    leased: list[tuple[Any, ...]] = field(default_factory=list)
    ids: set[int] = field(default_factory=set)
    ahead: int = 0
    disabled: list[int] = field(default_factory=list)
    full: list[int] = field(default_factory=list)
    # SQLite, with a tenant cap: each webhook's tenant, and each tenant's room and other leases.
    tenant: dict[int, int] = field(default_factory=dict)
    tenant_room: dict[int, int] = field(default_factory=dict)
    tenant_busy: dict[int, int] = field(default_factory=dict)
    own_by_tenant: dict[int, int] | None = None


class Claim:
    """PostgreSQL scans, locks, counts, picks and leases in two statements sent at once
    (``sql.pg_claim``); SQLite, where a statement costs no round trip, picks in Python
    (``QueueSql.pick``), and looks past full endpoints in a second pass."""

    def __init__(
        self, sql: QueueSql, request: ClaimRequest, blocked: list[int] | None, others: dict[int, int] | None
    ) -> None:
        self.sql = sql
        self.r = request
        self.blocked = blocked
        self.others = others
        self.limited = request.per_endpoint is not None
        self.capped = request.tenant_cap is not None
        # Other workers' leases are counted, under a claim lock, when any limit needs them.
        self.lock = self.limited or self.capped
        self.ahead = request.ahead if self.limited else 0
        self.per_hook = (
            request.limit if request.per_endpoint is None else min(request.limit, request.per_endpoint + self.ahead)
        )
        self.window = request.limit * 4
        self.t = _Taken()

    def run(self, tx: HotTransaction) -> list[ClaimedDelivery]:
        if self.sql.take is not None:
            self._take(tx)
        else:
            passes = 2 if self.r.look_past_full and self.lock else 1
            for deeper in range(passes):
                candidates = self._scan(tx, probe=deeper > 0)
                mine = [(row[0], row[1]) for row in candidates if row[0] not in self.t.ids]
                if mine:
                    self._count_others(tx, mine)
                    self._pick(mine)
                    self._queue_ahead(mine)
                if self._enough(candidates):
                    break
            self._lease(tx)
        if self.others is not None:
            self.others.update(self.t.busy)
        return self._claimed()

    def _params(self) -> dict[str, Any]:
        r, t = self.r, self.t
        return {
            "now": r.now,
            "window": self.window,
            "full": self.sql.ids(t.full),
            "crowded": self.sql.ids([tenant for tenant, left in t.tenant_room.items() if left <= 0]),
            "per_hook": self.per_hook,
            "lock": self.lock,
            "tcap": r.tenant_cap,
            "owner": r.owner,
            "enough": r.limit - len(t.picked) - len(t.leased) + t.ahead,
            "own_ids": self.sql.ids(list(r.own)),
            "own_n": self.sql.ids(list(r.own.values())),
            "cap": MAX_WEBHOOK_ID if r.per_endpoint is None else r.per_endpoint,
            "ahead": self.ahead,
        }

    def _scan(self, tx: HotTransaction, probe: bool) -> list[tuple[Any, ...]]:
        """SQLite: (id, webhook_id, scanned, 1), the oldest due rows, at most ``per_hook`` of each
        webhook; the first pass reads the due index, a deeper one each webhook's own queue past
        those found full (see ``QueueSql.scan`` and ``probe``)."""
        return tx.fetch(self.sql.probe if probe else self.sql.scan, self._params())

    def _take(self, tx: HotTransaction) -> None:
        """PostgreSQL: scan and lock, then count, pick, queue ahead and lease, in one round trip
        with the transaction's begin and commit (see ``sql.pg_claim``)."""
        r, t, sql = self.r, self.t, self.sql
        assert sql.take is not None and sql.claim_setup is not None
        if self.lock and sql.unlock is not None:
            tx.after_commit(sql.unlock)
        params = self._params() | {
            "until": r.now + r.lease,
            "deeper": r.look_past_full,
            "limit": r.limit,
            "ahead_limit": r.ahead_limit if self.limited else 0,
        }
        tx.send(sql.claim_setup, {})
        tx.send(sql.scan, params)
        for row in tx.fetch(sql.take, params, last=True):
            if row[0] is not None:
                t.leased.append(row)
                t.ids.add(row[0])
                t.ahead += row[10]
                continue
            if row[10] is not None:
                t.room[row[1]], t.busy[row[1]] = row[10], row[11]
            if row[12] and self.blocked is not None:
                self.blocked.append(row[1])

    def _count_others(self, tx: HotTransaction, mine: list[tuple[int, int]]) -> None:
        """SQLite: each new webhook's row and the other workers' leases on it, hence its room."""
        r, t, sql = self.r, self.t, self.sql
        assert sql.pick is not None
        new_hooks = sorted({row[1] for row in mine} - t.hooks.keys())
        if new_hooks:
            statement = sql.pick.hooks_limited if self.lock else sql.pick.hooks
            params = {"ids": sql.ids(new_hooks), "owner": r.owner, "now": r.now}
            # (id, url, secret, enabled, previous_secret, previous_secret_expires_at, busy, tenant_id)
            for found in tx.fetch(statement, params):
                hook_id = found[0]
                t.hooks[hook_id], t.busy[hook_id], t.tenant[hook_id] = found, found[6], found[7]
                if r.per_endpoint is None:
                    t.room[hook_id], t.extra[hook_id] = r.limit, 0
                else:
                    sendable = r.per_endpoint - found[6]
                    t.extra[hook_id] = min(self.ahead, max(0, sendable))
                    t.room[hook_id] = sendable + t.extra[hook_id] - r.own.get(hook_id, 0)
            if self.capped:
                self._count_tenants(tx, {t.tenant[hook_id] for hook_id in new_hooks if hook_id in t.tenant})
        # (A webhook missing from ``hooks`` was deleted meanwhile.) A lease that outlived its
        # worker can come due after the webhook was disabled.
        t.disabled += [row[0] for row in mine if row[1] in t.hooks and not t.hooks[row[1]][3]]

    def _count_tenants(self, tx: HotTransaction, tenants: set[int]) -> None:
        """SQLite: each new tenant's room: its cap less the other workers' leases on its webhooks
        and this worker's own deliveries to them."""
        r, t, sql = self.r, self.t, self.sql
        assert sql.pick is not None and r.tenant_cap is not None
        new = sorted(tenants - t.tenant_room.keys())
        if not new:
            return
        if t.own_by_tenant is None:
            t.own_by_tenant = {}
            for hook_id, tenant in tx.fetch(sql.pick.tenant_of, {"ids": sql.ids(list(r.own))}):
                t.own_by_tenant[tenant] = t.own_by_tenant.get(tenant, 0) + r.own[hook_id]
        for tenant, busy in tx.fetch(sql.pick.tenants, {"ids": sql.ids(new), "owner": r.owner, "now": r.now}):
            t.tenant_busy[tenant] = busy
            t.tenant_room[tenant] = r.tenant_cap - busy - t.own_by_tenant.get(tenant, 0)

    def _tenant_has_room(self, hook_id: int) -> bool:
        return not self.capped or self.t.tenant_room[self.t.tenant[hook_id]] > 0

    def _count(self, delivery_id: int, hook_id: int) -> None:
        """SQLite: a row picked, off its webhook's room and its tenant's."""
        t = self.t
        t.room[hook_id] -= 1
        if self.capped:
            t.tenant_room[t.tenant[hook_id]] -= 1
        t.picked.append(delivery_id)
        t.ids.add(delivery_id)

    def _pick(self, mine: list[tuple[int, int]]) -> None:
        """SQLite: rows to send, oldest first, up to each webhook's room (``take``'s rule)."""
        t = self.t
        for delivery_id, hook_id in mine:
            hook = t.hooks.get(hook_id)
            if (
                hook
                and hook[3]
                and t.room[hook_id] > t.extra[hook_id]
                and len(t.picked) - t.ahead < self.r.limit
                and self._tenant_has_room(hook_id)
            ):
                self._count(delivery_id, hook_id)

    def _queue_ahead(self, mine: list[tuple[int, int]]) -> None:
        """SQLite: then rows to queue behind this worker's sends, where it filled the room."""
        t = self.t
        for delivery_id, hook_id in mine:
            if t.ahead >= self.r.ahead_limit:
                return
            hook = t.hooks.get(hook_id)
            fills = (
                hook is not None and hook[3] and delivery_id not in t.ids and 0 < t.room[hook_id] <= t.extra[hook_id]
            )
            if fills and self._tenant_has_room(hook_id):
                self._count(delivery_id, hook_id)
                t.ahead += 1

    def _enough(self, candidates: list[tuple[Any, ...]]) -> bool:
        """Whether to stop here: enough taken, or nothing due past the webhooks found full."""
        r, t = self.r, self.t
        t.full = [hook_id for hook_id, left in t.room.items() if left <= 0]
        if self.blocked is not None:
            self.blocked.extend(hook_id for hook_id in t.full if t.busy[hook_id] > 0)
            self.blocked.extend(
                hook_id
                for hook_id, tenant in t.tenant.items()
                if self.capped and t.tenant_room[tenant] <= 0 and t.tenant_busy[tenant] > 0 and hook_id not in t.full
            )
        if r.per_endpoint is not None:
            # Webhooks whose every slot this worker fills itself were not even locked.
            mine_full = {row[1] for row in candidates if r.own.get(row[1], 0) >= r.per_endpoint + self.ahead}
            t.full += mine_full - t.room.keys()
        scanned = candidates[0][2] if candidates else 0
        crowded = any(left <= 0 for left in t.tenant_room.values())
        return len(t.picked) + len(t.leased) - t.ahead >= r.limit or scanned < self.window or not (t.full or crowded)

    def _lease(self, tx: HotTransaction) -> None:
        """SQLite: hold what is due for disabled webhooks, lease the picked rows, read bodies."""
        r, t, sql = self.r, self.t, self.sql
        assert sql.pick is not None
        if t.disabled:
            tx.send(sql.pick.hold, {"ids": sql.ids(t.disabled), "now": r.now})
        if not t.picked:
            return
        params = {"ids": sql.ids(t.picked), "now": r.now, "until": r.now + r.lease, "owner": r.owner}
        claimed = tx.fetch(sql.pick.lease, params)
        event_ids = sql.ids(list({row[2] for row in claimed}))
        bodies = {row[0]: row[1:] for row in tx.fetch(sql.pick.bodies, {"ids": event_ids}, last=True)}
        for delivery_id, hook_id, event_id, attempts in claimed:
            _id, url, secret, _enabled, previous_secret, previous_expires, *_ = t.hooks[hook_id]
            event = (event_id, attempts, *bodies[event_id])
            t.leased.append((delivery_id, hook_id, *event, url, secret, previous_secret, previous_expires))

    def _claimed(self) -> list[ClaimedDelivery]:
        return [
            ClaimedDelivery(
                delivery_id, hook_id, event_id, event_type, attempts, url, secret, body.encode(), previous, expires
            )
            for (
                delivery_id,
                hook_id,
                event_id,
                attempts,
                event_type,
                body,
                url,
                secret,
                previous,
                expires,
                *_,
            ) in sorted(self.t.leased)
        ]
