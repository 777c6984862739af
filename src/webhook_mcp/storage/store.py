"""All SQL lives here: the service and the dispatcher ask, the store answers in plain rows."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import psycopg
from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Row,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from webhook_mcp.storage.engine import READ_ONLY_OPTION
from webhook_mcp.storage.pipeline import ConnectionTransaction, HotTransaction, PipelinedRunner, driver_rows
from webhook_mcp.storage.queue_sql import POSTGRES, SQLITE
from webhook_mcp.storage.schema import (
    HISTOGRAM_COLUMNS,
    LATENCY_BUCKETS_MS,
    MAX_ERROR_LENGTH,
    attempt_rollups,
    deliveries,
    delivery_attempts,
    events,
    webhooks,
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    type: str
    body: str
    idempotency_key: str | None = None
    problems: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    type: str
    queued: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    attempt_number: int
    url: str
    secret: str
    body: bytes
    # Stored values (maybe encrypted: the dispatcher opens them); the previous secret also signs
    # until it expires, during a rotation's grace period.
    previous_secret: str | None = None
    previous_secret_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    disabled: list[int]  # webhooks this batch disabled
    stopped: frozenset[int]  # webhooks of the batch that are disabled or deleted now


class Outcome(Protocol):
    """What the sender reports about one attempt (``sender.SendOutcome``)."""

    @property
    def success(self) -> bool: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def response_ms(self) -> float: ...
    @property
    def error(self) -> str | None: ...
    @property
    def response_excerpt(self) -> str: ...
    @property
    def retry_after(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt and what the retry policy decided about its delivery."""

    delivery_id: int | None
    webhook_id: int
    event_id: str
    event_type: str
    attempt_number: int
    is_test: bool
    created_at: float
    status_code: int | None
    response_ms: float
    success: bool
    error: str | None
    response_excerpt: str
    next_state: str = "succeeded"
    next_attempt_at: float | None = None
    disable_reason: str | None = None

    @classmethod
    def of(
        cls,
        outcome: Outcome,
        *,
        delivery_id: int | None,
        webhook_id: int,
        event_id: str,
        event_type: str,
        attempt_number: int,
        created_at: float,
        next_state: str = "succeeded",
        next_attempt_at: float | None = None,
        disable_reason: str | None = None,
    ) -> AttemptRecord:
        return cls(
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type,
            attempt_number=attempt_number,
            is_test=delivery_id is None,
            created_at=created_at,
            status_code=outcome.status_code,
            response_ms=outcome.response_ms,
            success=outcome.success,
            error=outcome.error,
            response_excerpt=outcome.response_excerpt,
            next_state=next_state,
            next_attempt_at=next_attempt_at,
            disable_reason=disable_reason,
        )


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    auto_disable_after: float
    min_failures: int


WORK_CHANNEL = "webhook_mcp_work"
MAX_WEBHOOK_ID = 2**31 - 1
MAX_ROW_ID = 2**63 - 1


EXACT_PERCENTILE_LIMIT = 10_000
STREAK_LIMIT = 10_000
MAX_RECONNECT_DELAY = 30.0

logger = logging.getLogger(__name__)


def _histogram_percentile(counts: Sequence[int], rank: int) -> float:
    """The upper bound of the bucket holding the ``rank``-th fastest attempt (the open last bucket
    reports its lower bound: the percentile is at least that)."""
    seen = 0
    for bound, count in zip(LATENCY_BUCKETS_MS, counts, strict=False):
        seen += count
        if seen >= rank:
            return float(bound)
    return float(LATENCY_BUCKETS_MS[-1])


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL, and a receiver's answer may contain anything."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _clip(text: str | None, limit: int = MAX_ERROR_LENGTH) -> str | None:
    return None if text is None else _storable(text[:limit])


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def _rollups(records: Sequence[AttemptRecord]) -> list[dict[str, Any]]:
    """The batch's additions to the hourly rollups (written in the batch's own transaction, so
    they never drift from the logs), in key order so concurrent writers cannot deadlock."""
    rollups: dict[tuple[int, float], dict[str, Any]] = {}
    for r in records:
        key = (r.webhook_id, r.created_at // 3600 * 3600)
        row = rollups.get(key)
        if row is None:
            row = rollups[key] = dict.fromkeys(HISTOGRAM_COLUMNS, 0) | {
                "webhook_id": key[0],
                "hour": key[1],
                "attempts": 0,
                "succeeded": 0,
                "tests": 0,
                "deliveries_succeeded": 0,
                "total_ms": 0.0,
                "last_success_at": None,
                "last_failure_at": None,
            }
        row["attempts"] += 1
        row["total_ms"] += r.response_ms
        row[HISTOGRAM_COLUMNS[bisect.bisect_left(LATENCY_BUCKETS_MS, r.response_ms)]] += 1
        if r.is_test:
            row["tests"] += 1
        if r.success:
            row["succeeded"] += 1
            row["deliveries_succeeded"] += not r.is_test
            row["last_success_at"] = max(row["last_success_at"] or 0.0, r.created_at)
        else:
            row["last_failure_at"] = max(row["last_failure_at"] or 0.0, r.created_at)
    return [rollups[key] for key in sorted(rollups)]


def _health(
    records: Sequence[AttemptRecord], now: float, policy: HealthPolicy | None, current: Mapping[int, tuple[Any, ...]]
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Each webhook's health counters after the batch (from ``current``, its locked row), and the
    webhooks the batch disables, with the reason: the endpoint said it is gone, or every delivery
    has failed for the policy's time."""
    by_hook: dict[int, list[AttemptRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.webhook_id):
        by_hook[record.webhook_id].append(record)
    health: list[dict[str, Any]] = []
    disabled: list[tuple[int, str]] = []
    for hook_id, batch in by_hook.items():
        _id, enabled, failures, failing_since, last_success, last_failure = current[hook_id]
        gone_reason = None
        for record in sorted(batch, key=lambda r: r.created_at):
            if record.success:
                failures, failing_since, last_success = 0, None, record.created_at
            else:
                failures += 1
                failing_since = failing_since or record.created_at
                last_failure = record.created_at
                gone_reason = record.disable_reason or gone_reason
        health.append(
            {
                "id": hook_id,
                "consecutive_failures": failures,
                "failing_since": failing_since,
                "last_success_at": last_success,
                "last_failure_at": last_failure,
            }
        )
        reason = gone_reason
        if (
            reason is None
            and policy is not None
            and failing_since is not None
            and failures >= policy.min_failures
            and now - failing_since >= policy.auto_disable_after
        ):
            reason = (
                f"auto-disabled: every delivery failed for {_duration(policy.auto_disable_after)} "
                f"({failures} failures in a row); "
                "fix the endpoint, check it with test_webhook, then toggle_webhook to re-enable"
            )
        if reason is not None and enabled:
            disabled.append((hook_id, reason))
    return health, disabled


T = TypeVar("T")


class Store:
    """Each operation is one transaction run whole on a database thread: one hop from the event
    loop per transaction instead of one per statement, which keeps claims fast while hundreds of
    deliveries share the loop. SQLite gets a single thread (it has one writer anyway)."""

    def __init__(self, engine: Engine, threads: int = 8) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        threads = threads if self.is_postgres else 1
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook-mcp-db")

        def param(name: str) -> str:
            return f"%({name})s" if self.is_postgres else f":{name}"

        later = "GREATEST" if self.is_postgres else "MAX"
        rollup_columns = [c.name for c in attempt_rollups.c]
        summed = [c for c in rollup_columns if c not in ("webhook_id", "hour", "last_success_at", "last_failure_at")]
        updates = [f"{c} = attempt_rollups.{c} + excluded.{c}" for c in summed] + [
            f"{c} = {later}(COALESCE(attempt_rollups.{c}, excluded.{c}), COALESCE(excluded.{c}, attempt_rollups.{c}))"
            for c in ("last_success_at", "last_failure_at")
        ]
        self._roll_up_sql = (
            f"INSERT INTO attempt_rollups ({', '.join(rollup_columns)}) "
            f"VALUES ({', '.join(map(param, rollup_columns))}) "
            f"ON CONFLICT (webhook_id, hour) DO UPDATE SET {', '.join(updates)}"
        )

        self._queue_sql = POSTGRES if self.is_postgres else SQLITE
        self._pipelined = PipelinedRunner(engine) if self.is_postgres else None

    async def close(self) -> None:
        if self._pipelined is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._pipelined.close)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.engine.dispose)
        self._executor.shutdown(wait=True)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        def transaction() -> T:
            with self.engine.begin() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, transaction)

    async def _hot(self, work: Callable[[HotTransaction], T]) -> T:
        """A dispatcher transaction: pipelined on PostgreSQL (see ``_hot_sql``)."""
        if self._pipelined is None:
            return await self._write(lambda conn: work(ConnectionTransaction(conn)))
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._pipelined.run, work)

    async def _read(self, work: Callable[[Connection], T]) -> T:
        def read() -> T:
            with self.engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, read)

    def _announce_work(self, conn: Connection) -> None:
        """Wake every listening worker (on any machine) when the transaction commits; PostgreSQL
        folds repeats within one transaction into one notification."""
        if self.is_postgres:
            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WORK_CHANNEL})

    async def fetch_all(self, query: Executable) -> list[Row[Any]]:
        """Ad-hoc reads, for tests and tools outside the service."""
        return await self._read(lambda conn: list(conn.execute(query).all()))

    async def scalar(self, query: Executable) -> Any:
        return await self._read(lambda conn: conn.scalar(query))

    # -- webhooks -------------------------------------------------------------------------

    async def insert_webhook(self, values: Mapping[str, Any]) -> Row[Any]:
        def work(conn: Connection) -> Any:
            row = (conn.execute(insert(webhooks).values(**values).returning(*webhooks.c))).one()
            return row

        return await self._write(work)

    async def get_webhook(self, webhook_id: int) -> Row[Any] | None:
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            return (conn.execute(select(webhooks).where(webhooks.c.id == webhook_id))).one_or_none()

        return await self._read(work)

    async def list_webhooks(self) -> list[Row[Any]]:
        def work(conn: Connection) -> Any:
            return list((conn.execute(select(webhooks).order_by(webhooks.c.id))).all())

        return await self._read(work)

    async def update_webhook(self, webhook_id: int, values: Mapping[str, Any]) -> Row[Any] | None:
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            return (
                conn.execute(
                    update(webhooks).where(webhooks.c.id == webhook_id).values(**values).returning(*webhooks.c)
                )
            ).one_or_none()

        return await self._write(work)

    async def set_enabled(self, webhook_id: int, enabled: bool, reason: str | None, now: float) -> Row[Any] | None:
        """Flip the flag and move the webhook's waiting deliveries between pending and held in the
        same transaction, so a dispatcher never sees a disabled webhook with pending work."""
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            row = (
                conn.execute(
                    update(webhooks)
                    .where(webhooks.c.id == webhook_id)
                    .values(
                        enabled=enabled,
                        disabled_reason=None if enabled else reason,
                        disabled_at=None if enabled else now,
                        updated_at=now,
                        **({"consecutive_failures": 0, "failing_since": None} if enabled else {}),
                    )
                    .returning(*webhooks.c)
                )
            ).one_or_none()
            if row is not None:
                self._move_waiting(conn, [webhook_id], enabled, now)
                if enabled:
                    self._announce_work(conn)
            return row

        return await self._write(work)

    def _move_waiting(self, conn: Connection, webhook_ids: Sequence[int], enabled: bool, now: float) -> None:
        """Deliveries in flight (leased) are left alone: recording their result holds them if the
        webhook is still disabled, and nothing is sent twice by a quick disable and enable."""
        if not enabled:
            driver_rows(conn, self._queue_sql.hold_waiting, {"ids": self._queue_sql.ids(webhook_ids), "now": now})
            return
        d = deliveries.c
        query = update(deliveries).where(d.webhook_id.in_(webhook_ids), d.state == "held")
        conn.execute(query.values(updated_at=now, state="pending", next_attempt_at=now))

    async def delete_webhook(self, webhook_id: int) -> tuple[Row[Any], int, int] | None:
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            # Locked first, as result writers lock it before its deliveries (no deadlock with them).
            row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id).with_for_update()).one_or_none()
            if row is None:
                return None
            attempts = conn.execute(delete(delivery_attempts).where(delivery_attempts.c.webhook_id == webhook_id))
            removed = conn.execute(delete(deliveries).where(deliveries.c.webhook_id == webhook_id))
            conn.execute(delete(attempt_rollups).where(attempt_rollups.c.webhook_id == webhook_id))
            conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
            return row, removed.rowcount, attempts.rowcount

        return await self._write(work)

    async def rotate_secret(
        self, webhook_id: int, secret: str, previous_expires_at: float | None, now: float
    ) -> tuple[Row[Any], float | None] | None:
        """Make ``secret`` current; the replaced one becomes the previous secret until
        ``previous_expires_at`` (None: dropped at once). The UPDATE takes the replaced secret from
        the row itself, so concurrent rotations never lose one. Returns the row and the expiry of
        the previous secret it replaced."""
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None
        w = webhooks.c

        def work(conn: Connection) -> Any:
            before = conn.execute(
                select(w.previous_secret_expires_at).where(w.id == webhook_id).with_for_update()
            ).one_or_none()
            if before is None:
                return None
            row = conn.execute(
                update(webhooks)
                .where(w.id == webhook_id)
                .values(
                    secret=secret,
                    previous_secret=None if previous_expires_at is None else w.secret,
                    previous_secret_expires_at=previous_expires_at,
                    updated_at=now,
                )
                .returning(*webhooks.c)
            ).one()
            return row, before.previous_secret_expires_at

        return await self._write(work)

    async def forget_expired_secrets(self, now: float) -> int:
        """Drop previous secrets whose grace period is over (they no longer sign anything)."""
        w = webhooks.c

        def work(conn: Connection) -> Any:
            result = conn.execute(
                update(webhooks)
                .where(w.previous_secret_expires_at <= now)
                .values(previous_secret=None, previous_secret_expires_at=None)
            )
            return int(result.rowcount)

        return await self._write(work)

    async def replace_secrets(self, changes: Sequence[Mapping[str, Any]]) -> int:
        """Store other forms of the same secrets (e.g. encrypted for plaintext): each change applies
        only while the row still holds what was read (``old_secret``, ``old_previous``), so a
        rotation in between is never undone."""
        w = webhooks.c

        def work(conn: Connection) -> Any:
            written = 0
            for change in changes:
                result = conn.execute(
                    update(webhooks)
                    .where(
                        w.id == change["id"],
                        w.secret == change["old_secret"],
                        w.previous_secret.is_not_distinct_from(change["old_previous"]),
                    )
                    .values(secret=change["secret"], previous_secret=change["previous"])
                )
                written += int(result.rowcount)
            return written

        return await self._write(work)

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, new_events: Sequence[NewEvent], now: float, idempotency_since: float) -> list[StoredEvent]:
        """The outbox: events and their deliveries are committed together, so nothing published
        can be lost, and an idempotency key seen within the window returns the first event."""

        def work(conn: Connection) -> Any:
            keys = [e.idempotency_key for e in new_events if e.idempotency_key]
            seen: dict[str, Any] = {}
            if keys:
                rows = conn.execute(
                    select(events.c.id, events.c.type, events.c.idempotency_key, events.c.created_at).where(
                        events.c.idempotency_key.in_(keys)
                    )
                )
                expired = []
                for row in rows:
                    if row.created_at >= idempotency_since:
                        seen[row.idempotency_key] = row
                    else:
                        expired.append(row.idempotency_key)
                if expired:
                    conn.execute(
                        update(events).where(events.c.idempotency_key.in_(expired)).values(idempotency_key=None)
                    )
            subscribers: dict[str, list[int]] = defaultdict(list)
            for hook in conn.execute(select(webhooks.c.id, webhooks.c.events).where(webhooks.c.enabled.is_(True))):
                for event_type in hook.events:
                    subscribers[event_type].append(hook.id)

            results: list[StoredEvent] = []
            event_rows: list[dict[str, Any]] = []
            delivery_rows: list[dict[str, Any]] = []
            batch_keys: dict[str, StoredEvent] = {}
            for new in new_events:
                key = new.idempotency_key
                if key and key in batch_keys:
                    first_in_batch = batch_keys[key]
                    results.append(StoredEvent(first_in_batch.id, first_in_batch.type, first_in_batch.queued, True))
                    continue
                event_row = {
                    "id": new.id,
                    "type": new.type,
                    "body": new.body,
                    "created_at": now,
                    "idempotency_key": key,
                    "problems": new.problems,
                }
                first = seen.get(key) if key else None
                if key and first is None and not self._insert_keyed(conn, event_row):
                    # Another transaction published this key since we looked: it won.
                    first = (
                        conn.execute(select(events.c.id, events.c.type).where(events.c.idempotency_key == key))
                    ).one()
                if first is not None:
                    queued = conn.scalar(
                        select(func.count()).select_from(deliveries).where(deliveries.c.event_id == first.id)
                    )
                    results.append(StoredEvent(first.id, first.type, int(queued or 0), True))
                    continue
                if not key:
                    event_rows.append(event_row)
                targets = subscribers.get(new.type, ())
                delivery_rows.extend(
                    {
                        "webhook_id": hook_id,
                        "event_id": new.id,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for hook_id in targets
                )
                stored = StoredEvent(new.id, new.type, len(targets), False)
                if key:
                    batch_keys[key] = stored
                results.append(stored)
            if event_rows:
                conn.execute(insert(events), event_rows)
            if delivery_rows:
                conn.execute(insert(deliveries), delivery_rows)
                self._announce_work(conn)
            return results

        return await self._write(work)

    def _insert_keyed(self, conn: Connection, row: dict[str, Any]) -> bool:
        """Insert an event with an idempotency key unless the key is taken; on PostgreSQL a
        concurrent publisher of the same key waits for ours to commit, then yields."""
        dialect_insert = pg_insert if self.is_postgres else sqlite_insert
        statement = (
            dialect_insert(events)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(events.c.id)
        )
        return conn.execute(statement).first() is not None

    # -- dispatching ----------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        limit: int,
        now: float,
        lease: float,
        per_endpoint: int | None = None,
        *,
        in_flight: Mapping[int, int] | None = None,
        ahead: int = 0,
        ahead_limit: int = 0,
        look_past_full: bool = True,
        blocked: list[int] | None = None,
        others: dict[int, int] | None = None,
    ) -> list[ClaimedDelivery]:
        """Take up to ``limit`` due deliveries atomically; a claim is a lease that pushes the
        delivery's due time forward, so a crashed worker's deliveries come due again by themselves.

        No webhook ever has more than ``per_endpoint`` deliveries in flight across all workers:
        other workers' leases are counted in the database while holding the webhook's claim lock
        (PostgreSQL: an advisory lock, taken with try so claimers never wait on each other, and
        kept only for the webhooks this claim needs; SQLite: the single writer), this worker's own
        from ``in_flight`` (its exact count of deliveries queued or being sent, which unlike its
        leases drops the moment a send ends, before the result is written). On PostgreSQL the
        claim is two round trips: the scan, which takes the locks, then one statement that counts,
        picks and leases (``QueueSql.take``).

        ``ahead`` lets the worker lease up to that many more of a webhook than it may send at once
        (and no more than it may send), to queue behind its own sends, so that a claim's round
        trips are not in the path of the endpoint's next requests; ``ahead_limit`` of them in all,
        besides the ``limit`` to send. They are taken only from webhooks whose room this claim
        filled, and other workers count them as in flight. The worker must then send no more
        than ``per_endpoint`` less the other workers' leases, which this claim writes to
        ``others`` for every webhook it counted: that holds the limit across the cluster, since
        leases only grow by claims, each of which counts all the others.

        Webhooks with due work this claim could not take because another worker was claiming from
        them at that moment, or holds their slots, are added to ``blocked``: worth another try
        soon, or a worker that claims only when it polls would rarely get its share.

        The claim looks at a bounded window of the oldest due rows; when that window is all
        endpoints at their limit, ``look_past_full`` allows one more window past them, a scan that
        can be long, so the dispatcher asks for it only now and then."""
        window = limit * 4
        ahead = 0 if per_endpoint is None else ahead
        per_hook = limit if per_endpoint is None else min(limit, per_endpoint + ahead)
        sql = self._queue_sql
        pick = sql.pick
        own = in_flight or {}
        own_ids, own_n = sql.ids(list(own)), sql.ids(list(own.values()))

        def work(tx: HotTransaction) -> Any:
            hooks: dict[int, tuple[Any, ...]] = {}
            room: dict[int, int] = {}  # with ``extra``
            extra: dict[int, int] = {}  # rows to queue ahead (SQLite)
            busy: dict[int, int] = {}
            picked: list[int] = []
            leased: list[tuple[Any, ...]] = []  # PostgreSQL: leased in the take statement
            taken_ahead = 0
            taken: set[int] = set()
            disabled: list[int] = []
            full: list[int] = []
            passes = 2 if look_past_full and per_endpoint is not None else 1
            for deeper in range(passes):
                lock = per_endpoint is not None
                if lock and sql.unlock is not None:
                    tx.after_commit(sql.unlock)
                params = {
                    "now": now,
                    "window": window,
                    "full": sql.ids(full),
                    "per_hook": per_hook,
                    "lock": lock,
                    "enough": limit - len(picked) - len(leased) + taken_ahead,
                    "own_ids": own_ids,
                    "own_n": own_n,
                    "cap": MAX_WEBHOOK_ID if per_endpoint is None else per_endpoint,
                    "ahead": ahead,
                }
                # (id, webhook_id, scanned, locked): see QueueSql.scan.
                candidates = tx.fetch(sql.scan, params)
                scanned = candidates[0][2] if candidates else 0
                if blocked is not None:
                    blocked.extend({row[1] for row in candidates if row[3] is False} - hooks.keys() - room.keys())
                mine = [(row[0], row[1]) for row in candidates if row[3] and row[0] not in taken]
                if sql.take is not None:
                    # A webhook's room is counted once per claim: a deeper pass takes only new ones.
                    mine = [row for row in mine if row[1] not in room]
                if sql.take is not None and mine:
                    # Pass 1 commits with its take unless a deeper pass may follow (now and then).
                    params |= {
                        "owner": owner,
                        "until": now + lease,
                        "limit": limit - len(leased) + taken_ahead,
                        "ahead_limit": ahead_limit - taken_ahead,
                        "ids": sql.ids([row[0] for row in mine]),
                        "id_hooks": sql.ids([row[1] for row in mine]),
                        "hooks": sql.ids(sorted({row[1] for row in mine})),
                    }
                    for row in tx.fetch(sql.take, params, last=deeper == passes - 1):
                        if row[0] is None:
                            room[row[1]], busy[row[1]] = row[10], row[11]
                        else:
                            leased.append(row)
                            taken.add(row[0])
                            taken_ahead += row[10]
                elif pick is not None and mine:
                    new_hooks = sorted({row[1] for row in mine} - hooks.keys())
                    if new_hooks:
                        statement = pick.hooks if per_endpoint is None else pick.hooks_limited
                        params = {"ids": sql.ids(new_hooks), "owner": owner, "now": now}
                        # (id, url, secret, enabled, previous_secret, previous_secret_expires_at, busy)
                        for found in tx.fetch(statement, params):
                            hook_id = found[0]
                            hooks[hook_id], busy[hook_id] = found, found[6]
                            if per_endpoint is None:
                                room[hook_id], extra[hook_id] = limit, 0
                            else:
                                sendable = per_endpoint - found[6]
                                extra[hook_id] = min(ahead, max(0, sendable))
                                room[hook_id] = sendable + extra[hook_id] - own.get(hook_id, 0)
                    # (A webhook missing from ``hooks`` was deleted meanwhile.) A lease that outlived
                    # its worker can come due after the webhook was disabled.
                    disabled += [row[0] for row in mine if row[1] in hooks and not hooks[row[1]][3]]
                    # Rows to send first, then (``ahead``) rows to queue: the same order as ``take``.
                    for delivery_id, hook_id in mine:
                        hook = hooks.get(hook_id)
                        if hook and hook[3] and room[hook_id] > extra[hook_id] and len(picked) - taken_ahead < limit:
                            room[hook_id] -= 1
                            picked.append(delivery_id)
                            taken.add(delivery_id)
                    for delivery_id, hook_id in mine if taken_ahead < ahead_limit else ():
                        hook = hooks.get(hook_id)
                        if (
                            hook
                            and hook[3]
                            and delivery_id not in taken
                            and 0 < room[hook_id] <= extra[hook_id]
                            and taken_ahead < ahead_limit
                        ):
                            room[hook_id] -= 1
                            picked.append(delivery_id)
                            taken.add(delivery_id)
                            taken_ahead += 1
                full = [hook_id for hook_id, left in room.items() if left <= 0]
                if blocked is not None:
                    blocked.extend(hook_id for hook_id in full if busy[hook_id] > 0)
                if per_endpoint is not None:
                    # Webhooks whose every slot this worker fills itself were not even locked.
                    full += {row[1] for row in candidates if own.get(row[1], 0) >= per_endpoint + ahead} - room.keys()
                if len(picked) + len(leased) - taken_ahead >= limit or scanned < window or not full:
                    break
            if others is not None:
                others.update(busy)
            if pick is not None and disabled:
                tx.send(pick.hold, {"ids": sql.ids(disabled), "now": now})
            if pick is not None and picked:
                until = now + lease
                claimed = tx.fetch(pick.lease, {"ids": sql.ids(picked), "now": now, "until": until, "owner": owner})
                event_ids = sql.ids(list({row[2] for row in claimed}))
                bodies = {row[0]: row[1:] for row in tx.fetch(pick.bodies, {"ids": event_ids}, last=True)}
                for delivery_id, hook_id, event_id, attempts in claimed:
                    _id, url, secret, _enabled, previous_secret, previous_expires, _busy = hooks[hook_id]
                    event = (event_id, attempts, *bodies[event_id])
                    leased.append((delivery_id, hook_id, *event, url, secret, previous_secret, previous_expires))
            return [
                ClaimedDelivery(
                    delivery_id,
                    hook_id,
                    event_id,
                    event_type,
                    attempts,
                    url,
                    secret,
                    body.encode(),
                    previous_secret,
                    previous_expires,
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
                    previous_secret,
                    previous_expires,
                    *_,
                ) in sorted(leased)
            ]

        return await self._hot(work)

    async def release(self, delivery_ids: Sequence[int], now: float) -> None:
        """Hand back claimed deliveries untouched (the attempt was never made)."""
        if not delivery_ids:
            return

        def work(conn: Connection) -> Any:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(delivery_ids))
                .values(next_attempt_at=now, lease_owner=None, attempts=deliveries.c.attempts - 1)
            )

        return await self._write(work)

    async def record_attempts(
        self, records: Sequence[AttemptRecord], now: float, policy: HealthPolicy | None = None
    ) -> Recorded:
        """Write a batch of attempts, their deliveries' next state and their webhooks' health in
        one transaction; says which webhooks this batch disabled and which of its webhooks are
        disabled or gone (a worker stops sending what it queued for them)."""
        if not records:
            return Recorded([], frozenset())

        sql = self._queue_sql
        rows = [
            {
                "webhook_id": r.webhook_id,
                "delivery_id": r.delivery_id,
                "event_id": r.event_id,
                "event_type": r.event_type,
                "attempt_number": r.attempt_number,
                "is_test": r.is_test,
                "created_at": r.created_at,
                "status_code": r.status_code,
                "response_ms": r.response_ms,
                "success": r.success,
                "error": _clip(r.error),
                "response_excerpt": _storable(r.response_excerpt),
                "next_state": r.next_state,
                "next_attempt_at": r.next_attempt_at if r.next_attempt_at is not None else r.created_at,
                "completed_at": r.created_at if r.next_state in ("succeeded", "failed") else None,
                "now": now,
            }
            for r in records
        ]

        def work(tx: HotTransaction) -> Any:
            ids = sql.ids(sorted({r.webhook_id for r in records}))
            current = {row[0]: row for row in tx.fetch(sql.lock_hooks, {"ids": ids})}
            # A webhook deleted while its delivery was in flight: its late result has nowhere to go
            # (and must not fail the whole batch, other webhooks' results with it, for ever).
            live = [r for r in records if r.webhook_id in current]
            live_rows = rows if len(live) == len(records) else [row for row in rows if row["webhook_id"] in current]
            stopped = ({r.webhook_id for r in records} - current.keys()) | {
                hook_id for hook_id, row in current.items() if not row[1]
            }
            if not live:
                return Recorded([], frozenset(stopped))
            # Driver SQL, not SQLAlchemy statements: per-row parameter handling would cost more
            # than the rows themselves at dispatcher rates.
            if sql.finish is None:
                tx.send(sql.log_attempts, {"rows": json.dumps(live_rows), "now": now})
            else:
                tx.send(sql.log_attempts, live_rows)
            tx.send(self._roll_up_sql, _rollups(live))
            real = [r for r in live if r.delivery_id is not None]
            if not real:
                return Recorded([], frozenset(stopped))
            if sql.finish is not None:
                tx.send(sql.finish, [row for row in live_rows if row["delivery_id"] is not None])
            health, disabled = _health(real, now, policy, current)
            tx.send(sql.health, health)
            if disabled:
                tx.send(sql.disable, [{"id": hook_id, "reason": reason, "now": now} for hook_id, reason in disabled])
            disabled_now = [hook_id for hook_id, _reason in disabled] + [
                hook_id for hook_id, row in current.items() if not row[1]
            ]
            if disabled_now:
                tx.send(sql.hold_waiting, {"ids": sql.ids(disabled_now), "now": now})
            return Recorded([hook_id for hook_id, _reason in disabled], frozenset(stopped.union(disabled_now)))

        return await self._hot(work)

    # -- reading logs and stats -------------------------------------------------------------

    async def attempts_page(
        self, webhook_id: int, limit: int, before_id: int | None, success: bool | None, is_test: bool | None
    ) -> list[Row[Any]]:
        a = delivery_attempts.c
        # Ordered by the whole index prefix (the filtered columns are constants), so PostgreSQL
        # walks (webhook_id[, filter], id) backwards instead of the primary key across all webhooks.
        order = [a.webhook_id.desc()]
        query = select(delivery_attempts).where(a.webhook_id == webhook_id).limit(limit)
        if before_id is not None:
            query = query.where(a.id < before_id)
        if success is not None:
            query = query.where(a.success.is_(success))
            order.append(a.success.desc())
        elif is_test is not None:
            query = query.where(a.is_test.is_(is_test))
            order.append(a.is_test.desc())
        if success is not None and is_test is not None:
            query = query.where(a.is_test.is_(is_test))
        query = query.order_by(*order, a.id.desc())

        def work(conn: Connection) -> Any:
            return list((conn.execute(query)).all())

        return await self._read(work)

    async def stats(self, webhook_id: int, since: float | None) -> dict[str, Any]:
        """Counts come from the hourly rollups (a window starts at the top of its first hour), so
        the cost does not grow with the log. The p95 is exact up to ``EXACT_PERCENTILE_LIMIT``
        attempts and otherwise the upper bound of the histogram bucket that holds it."""
        r = attempt_rollups.c
        a = delivery_attempts.c
        hour_from = None if since is None else since // 3600 * 3600
        in_window = literal(True) if hour_from is None else r.hour >= hour_from

        def windowed(column: Any) -> Any:
            return func.coalesce(func.sum(case((in_window, column), else_=0)), 0)

        def work(conn: Connection) -> Any:
            totals = conn.execute(
                select(
                    windowed(r.attempts).label("total"),
                    windowed(r.succeeded).label("succeeded"),
                    windowed(r.tests).label("tests"),
                    windowed(r.total_ms).label("total_ms"),
                    func.max(case((in_window, r.last_success_at))).label("last_success"),
                    func.max(case((in_window, r.last_failure_at))).label("last_failure"),
                    func.coalesce(func.sum(r.deliveries_succeeded), 0).label("deliveries_succeeded"),
                    *(windowed(r[name]).label(name) for name in HISTOGRAM_COLUMNS),
                ).where(r.webhook_id == webhook_id)
            ).one()
            total = int(totals.total)
            p95 = None
            if total:
                rank = math.ceil(0.95 * total)  # nearest-rank percentile
                if total <= EXACT_PERCENTILE_LIMIT:
                    scope = [a.webhook_id == webhook_id]
                    if hour_from is not None:
                        scope.append(a.created_at >= hour_from)
                    p95 = conn.scalar(
                        select(a.response_ms).where(*scope).order_by(a.response_ms).offset(rank - 1).limit(1)
                    )
                if p95 is None:  # large, or the logs behind the rollups were pruned
                    p95 = _histogram_percentile([int(totals._mapping[name]) for name in HISTOGRAM_COLUMNS], rank)
            window = [a.webhook_id == webhook_id]
            if hour_from is not None:
                window.append(a.created_at >= hour_from)
            last_success_id = conn.scalar(
                select(a.id)
                .where(a.webhook_id == webhook_id, a.success.is_(True))
                .order_by(a.webhook_id.desc(), a.success.desc(), a.id.desc())
                .limit(1)
            )
            if last_success_id is not None:
                window.append(a.id > last_success_id)
            since_success = select(a.id).where(*window).limit(STREAK_LIMIT).subquery()
            streak = conn.scalar(select(func.count()).select_from(since_success))
            d = deliveries.c
            states = {
                row.state: row.n
                for row in conn.execute(
                    select(d.state, func.count().label("n"))
                    .where(d.webhook_id == webhook_id, d.state.in_(("pending", "held", "failed")))
                    .group_by(d.state)
                )
            }
            states["succeeded"] = int(totals.deliveries_succeeded)
            next_retry = conn.scalar(
                select(func.min(d.next_attempt_at)).where(
                    d.webhook_id == webhook_id, d.state == "pending", d.attempts > 0
                )
            )
            return {
                "total": total,
                "succeeded": int(totals.succeeded),
                "tests": int(totals.tests),
                "avg_ms": float(totals.total_ms) / total if total else None,
                "p95_ms": None if p95 is None else float(p95),
                "last_success": totals.last_success,
                "last_failure": totals.last_failure,
                "streak": int(streak or 0),
                "states": states,
                "next_retry": next_retry,
            }

        return await self._read(work)

    # -- wake-ups across processes ----------------------------------------------------------

    async def listen_for_work(self, on_work: Callable[[], None], retry_delay: float = 1.0) -> None:
        """Call ``on_work`` whenever any process commits new due work (PostgreSQL LISTEN/NOTIFY),
        and once after each (re)connection, since notifications sent while away are lost. Runs
        until cancelled and outlives database restarts; SQLite has no notifications (returns)."""
        if not self.is_postgres:
            return
        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = retry_delay
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {WORK_CHANNEL}")
                    delay = retry_delay
                    on_work()
                    async for _notice in conn.notifies():
                        on_work()
            except psycopg.Error as exc:
                logger.warning("listening for new work failed (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

    # -- redelivery and upkeep ------------------------------------------------------------

    async def get_delivery(self, delivery_id: int) -> Row[Any] | None:
        if not 0 < delivery_id <= MAX_ROW_ID:
            return None

        def work(conn: Connection) -> Any:
            return (conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).one_or_none()

        return await self._read(work)

    async def requeue(
        self, webhook_id: int, now: float, delivery_id: int | None = None, since: float | None = None
    ) -> int:
        """Revive dead deliveries with a fresh attempt budget; held when the webhook is disabled."""

        def work(conn: Connection) -> Any:
            enabled = conn.scalar(select(webhooks.c.enabled).where(webhooks.c.id == webhook_id))
            query = update(deliveries).where(deliveries.c.webhook_id == webhook_id, deliveries.c.state == "failed")
            if delivery_id is not None:
                query = query.where(deliveries.c.id == delivery_id)
            if since is not None:
                query = query.where(deliveries.c.created_at >= since)
            result = conn.execute(
                query.values(
                    state="pending" if enabled else "held",
                    attempts=0,
                    next_attempt_at=now,
                    completed_at=None,
                    lease_owner=None,
                    updated_at=now,
                )
            )
            if result.rowcount and enabled:
                self._announce_work(conn)
            return int(result.rowcount)

        return await self._write(work)

    async def prune_attempts(self, older_than: float, batch: int) -> int:
        """Delete one small batch of old log rows, so pruning never holds a long write lock."""

        def work(conn: Connection) -> Any:
            oldest = (
                select(delivery_attempts.c.id)
                .where(delivery_attempts.c.created_at < older_than)
                .order_by(delivery_attempts.c.id)
                .limit(batch)
            )
            result = conn.execute(delete(delivery_attempts).where(delivery_attempts.c.id.in_(oldest.scalar_subquery())))
            return int(result.rowcount)

        return await self._write(work)
