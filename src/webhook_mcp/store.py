"""All SQL lives here: the service and the dispatcher ask, the store answers in plain rows."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Row,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .tables import MAX_ERROR_LENGTH, deliveries, delivery_attempts, events, webhooks


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    type: str
    body: str
    idempotency_key: str | None = None


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


DB_THREADS = 8
MAX_WEBHOOK_ID = 2**31 - 1
MAX_ROW_ID = 2**63 - 1


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def _clip(text: str | None, limit: int = MAX_ERROR_LENGTH) -> str | None:
    return None if text is None else text[:limit]


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


T = TypeVar("T")


class Store:
    """Each operation is one transaction run whole on a database thread: one hop from the event
    loop per transaction instead of one per statement, which keeps claims fast while hundreds of
    deliveries share the loop. SQLite gets a single thread (it has one writer anyway)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        threads = DB_THREADS if self.is_postgres else 1
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook-mcp-db")

        def param(name: str) -> str:
            return f"%({name})s" if self.is_postgres else f":{name}"

        columns = [c.name for c in delivery_attempts.c if c.name != "id"]
        self._insert_attempts_sql = (
            f"INSERT INTO delivery_attempts ({', '.join(columns)}) VALUES ({', '.join(map(param, columns))})"
        )
        finished = ("state", "next_attempt_at", "last_status", "last_error", "updated_at", "completed_at")
        self._finish_deliveries_sql = (
            f"UPDATE deliveries SET lease_owner = NULL, {', '.join(f'{c} = {param(c)}' for c in finished)} "
            f"WHERE id = {param('id')}"
        )

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.engine.dispose)
        self._executor.shutdown(wait=True)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        def transaction() -> T:
            with self.engine.begin() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, transaction)

    async def _read(self, work: Callable[[Connection], T]) -> T:
        def read() -> T:
            with self.engine.connect() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, read)

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
            return row

        return await self._write(work)

    @staticmethod
    def _move_waiting(conn: Connection, webhook_ids: Sequence[int], enabled: bool, now: float) -> None:
        """Deliveries in flight (leased) are left alone: recording their result holds them if the
        webhook is still disabled, and nothing is sent twice by a quick disable and enable."""
        d = deliveries.c
        if enabled:
            query = update(deliveries).where(d.webhook_id.in_(webhook_ids), d.state == "held")
            values: dict[str, Any] = {"state": "pending", "next_attempt_at": now}
        else:
            leased = and_(d.lease_owner.is_not(None), d.next_attempt_at > now)
            query = update(deliveries).where(d.webhook_id.in_(webhook_ids), d.state == "pending", ~leased)
            values = {"state": "held", "lease_owner": None}
        conn.execute(query.values(updated_at=now, **values))

    async def delete_webhook(self, webhook_id: int) -> tuple[Row[Any], int, int] | None:
        if not 0 < webhook_id <= MAX_WEBHOOK_ID:
            return None

        def work(conn: Connection) -> Any:
            row = (conn.execute(select(webhooks).where(webhooks.c.id == webhook_id))).one_or_none()
            if row is None:
                return None
            attempts = conn.execute(delete(delivery_attempts).where(delivery_attempts.c.webhook_id == webhook_id))
            removed = conn.execute(delete(deliveries).where(deliveries.c.webhook_id == webhook_id))
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
        rooms: Mapping[int, int] | None = None,
        default_room: int | None = None,
    ) -> list[ClaimedDelivery]:
        """Take up to ``limit`` due deliveries atomically; a claim is a lease that pushes the
        delivery's due time forward, so a crashed worker's deliveries come due again by themselves.

        ``rooms`` caps how many may be taken per webhook (``default_room`` for the others), so a
        backlog for one endpoint never crowds out the rest or comes back unused."""

        def work(conn: Connection) -> Any:
            due = self._due(limit, now, rooms or {}, default_room)
            claimed = (
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_(due.scalar_subquery()))
                    .values(
                        next_attempt_at=now + lease,
                        lease_owner=owner,
                        attempts=deliveries.c.attempts + 1,
                        updated_at=now,
                    )
                    .returning(deliveries.c.id, deliveries.c.webhook_id, deliveries.c.event_id, deliveries.c.attempts)
                )
            ).all()
            if not claimed:
                return []
            event_ids = {row.event_id for row in claimed}
            hook_ids = {row.webhook_id for row in claimed}
            bodies = {
                row.id: (row.type, row.body)
                for row in conn.execute(
                    select(events.c.id, events.c.type, events.c.body).where(events.c.id.in_(event_ids))
                )
            }
            hooks = {
                row.id: (row.url, row.secret, row.enabled, row.previous_secret, row.previous_secret_expires_at)
                for row in conn.execute(
                    select(
                        webhooks.c.id,
                        webhooks.c.url,
                        webhooks.c.secret,
                        webhooks.c.enabled,
                        webhooks.c.previous_secret,
                        webhooks.c.previous_secret_expires_at,
                    ).where(webhooks.c.id.in_(hook_ids))
                )
            }
            # A lease that outlived its worker can come due after the webhook was disabled.
            disabled = [row.id for row in claimed if not hooks[row.webhook_id][2]]
            if disabled:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_(disabled))
                    .values(state="held", lease_owner=None, attempts=deliveries.c.attempts - 1, updated_at=now)
                )
            result = []
            for row in sorted(claimed, key=lambda r: r.id):
                url, secret, enabled, previous, previous_expires = hooks[row.webhook_id]
                if not enabled:
                    continue
                event_type, body = bodies[row.event_id]
                result.append(
                    ClaimedDelivery(
                        row.id,
                        row.webhook_id,
                        row.event_id,
                        event_type,
                        row.attempts,
                        url,
                        secret,
                        body.encode(),
                        previous,
                        previous_expires,
                    )
                )
            return result

        return await self._write(work)

    def _due(self, limit: int, now: float, rooms: Mapping[int, int], default_room: int | None) -> Select[Any]:
        """The ids to claim (built on the database thread: it is not free to build)."""
        d = deliveries.c
        # Ranking looks at a bounded window of the oldest due rows, never the whole backlog.
        scan = (
            select(d.id, d.webhook_id, d.next_attempt_at)
            .where(d.state == "pending", d.next_attempt_at <= now)
            .order_by(d.next_attempt_at)
            .limit(limit if default_room is None else limit * 4)
        )
        full = [hook for hook, room in rooms.items() if room <= 0]
        if full:
            scan = scan.where(d.webhook_id.not_in(full))
        if self.is_postgres:
            scan = scan.with_for_update(skip_locked=True)
        if default_room is None:
            due = scan.with_only_columns(d.id)
        else:
            candidates = scan.subquery("candidates")
            rank = func.row_number().over(
                partition_by=candidates.c.webhook_id, order_by=(candidates.c.next_attempt_at, candidates.c.id)
            )
            ranked = select(candidates, rank.label("rank")).subquery("ranked")
            open_rooms = {hook: room for hook, room in rooms.items() if room > 0}
            room = (
                case(open_rooms, value=ranked.c.webhook_id, else_=default_room) if open_rooms else literal(default_room)
            )
            due = select(ranked.c.id).where(ranked.c.rank <= room).order_by(ranked.c.next_attempt_at).limit(limit)

        return due

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
    ) -> list[int]:
        """Write a batch of attempts, their deliveries' next state and their webhooks' health in
        one transaction; returns the ids of webhooks this batch disabled."""
        if not records:
            return []

        def work(conn: Connection) -> Any:
            # Plain driver executemany: SQLAlchemy's per-row parameter handling would cost more
            # than the rows themselves at dispatcher rates.
            conn.exec_driver_sql(
                self._insert_attempts_sql,
                [
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
                        "response_excerpt": r.response_excerpt,
                    }
                    for r in records
                ],
            )
            real = [r for r in records if r.delivery_id is not None]
            if not real:
                return []
            conn.exec_driver_sql(
                self._finish_deliveries_sql,
                [
                    {
                        "id": r.delivery_id,
                        "state": r.next_state,
                        "next_attempt_at": r.next_attempt_at if r.next_attempt_at is not None else r.created_at,
                        "last_status": r.status_code,
                        "last_error": _clip(r.error),
                        "updated_at": now,
                        "completed_at": r.created_at if r.next_state in ("succeeded", "failed") else None,
                    }
                    for r in real
                ],
            )
            return self._update_health(conn, real, now, policy)

        return await self._write(work)

    def _update_health(
        self, conn: Connection, records: Sequence[AttemptRecord], now: float, policy: HealthPolicy | None
    ) -> list[int]:
        by_hook: dict[int, list[AttemptRecord]] = defaultdict(list)
        for record in records:
            by_hook[record.webhook_id].append(record)
        current = {
            row.id: row
            for row in conn.execute(
                select(
                    webhooks.c.id,
                    webhooks.c.enabled,
                    webhooks.c.consecutive_failures,
                    webhooks.c.failing_since,
                    webhooks.c.last_success_at,
                    webhooks.c.last_failure_at,
                ).where(webhooks.c.id.in_(by_hook))
            )
        }
        disabled: list[int] = []
        for hook_id, batch in by_hook.items():
            row = current.get(hook_id)
            if row is None:
                continue
            failures, failing_since = row.consecutive_failures, row.failing_since
            last_success, last_failure = row.last_success_at, row.last_failure_at
            gone_reason = None
            for record in sorted(batch, key=lambda r: r.created_at):
                if record.success:
                    failures, failing_since, last_success = 0, None, record.created_at
                else:
                    failures += 1
                    failing_since = failing_since or record.created_at
                    last_failure = record.created_at
                    gone_reason = record.disable_reason or gone_reason
            values: dict[str, Any] = {
                "consecutive_failures": failures,
                "failing_since": failing_since,
                "last_success_at": last_success,
                "last_failure_at": last_failure,
            }
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
            if reason is not None and row.enabled:
                values.update(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
                disabled.append(hook_id)
            conn.execute(update(webhooks).where(webhooks.c.id == hook_id).values(**values))
        disabled_now = disabled + [hook_id for hook_id, row in current.items() if not row.enabled]
        if disabled_now:
            self._move_waiting(conn, disabled_now, enabled=False, now=now)
        return disabled

    # -- reading logs and stats -------------------------------------------------------------

    async def attempts_page(
        self, webhook_id: int, limit: int, before_id: int | None, success: bool | None, is_test: bool | None
    ) -> list[Row[Any]]:
        query = (
            select(delivery_attempts)
            .where(delivery_attempts.c.webhook_id == webhook_id)
            .order_by(delivery_attempts.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(delivery_attempts.c.id < before_id)
        if success is not None:
            query = query.where(delivery_attempts.c.success.is_(success))
        if is_test is not None:
            query = query.where(delivery_attempts.c.is_test.is_(is_test))

        def work(conn: Connection) -> Any:
            return list((conn.execute(query)).all())

        return await self._read(work)

    async def stats(self, webhook_id: int, since: float | None) -> dict[str, Any]:
        a = delivery_attempts.c
        scope = [a.webhook_id == webhook_id]
        if since is not None:
            scope.append(a.created_at >= since)
        where = and_(*scope)

        def work(conn: Connection) -> Any:
            totals = (
                conn.execute(
                    select(
                        func.count().label("total"),
                        func.coalesce(func.sum(case((a.success, 1), else_=0)), 0).label("succeeded"),
                        func.coalesce(func.sum(case((a.is_test, 1), else_=0)), 0).label("tests"),
                        func.avg(a.response_ms).label("avg_ms"),
                        func.max(case((a.success, a.created_at))).label("last_success"),
                        func.max(case((a.success.is_(False), a.created_at))).label("last_failure"),
                        func.max(case((a.success, a.id))).label("last_success_id"),
                    ).where(where)
                )
            ).one()
            p95 = None
            if totals.total:
                offset = math.ceil(0.95 * totals.total) - 1  # nearest-rank percentile
                p95 = conn.scalar(select(a.response_ms).where(where).order_by(a.response_ms).offset(offset).limit(1))
            streak_scope = [where]
            if totals.last_success_id is not None:
                streak_scope.append(a.id > totals.last_success_id)
            streak = conn.scalar(select(func.count()).where(*streak_scope))
            d = deliveries.c
            states = {
                row.state: row.n
                for row in conn.execute(
                    select(d.state, func.count().label("n")).where(d.webhook_id == webhook_id).group_by(d.state)
                )
            }
            next_retry = conn.scalar(
                select(func.min(d.next_attempt_at)).where(
                    d.webhook_id == webhook_id, d.state == "pending", d.attempts > 0
                )
            )
            return {
                "total": int(totals.total),
                "succeeded": int(totals.succeeded),
                "tests": int(totals.tests),
                "avg_ms": None if totals.avg_ms is None else float(totals.avg_ms),
                "p95_ms": None if p95 is None else float(p95),
                "last_success": totals.last_success,
                "last_failure": totals.last_failure,
                "streak": int(streak or 0),
                "states": states,
                "next_retry": next_retry,
            }

        return await self._read(work)

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
