"""Retention: finished deliveries and the events they were for leave the database after their
retention period, a small batch per transaction, walking each table in key order so a batch reads
only the rows it looks at (no index on completion time is needed, or written with every result).
The hourly statistics and the queue's pending and held rows are never touched."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, or_, select, text, tuple_

from webhook_mcp.storage.base import StoreBase
from webhook_mcp.storage.schema import deliveries, events

# Only one process prunes at a time on PostgreSQL (the others skip their turn), so two pruners
# never wait on each other's row locks.
_RETENTION_LOCK_ID = 0x77687274  # "whrt"
PRUNED_TABLES = ("delivery_attempts", "deliveries", "events")


@dataclass(frozen=True, slots=True)
class Swept:
    """One batch: rows deleted, and where the next batch starts (None: this sweep is done)."""

    deleted: int
    cursor: Any


class RetentionQueries(StoreBase):
    def _prune_turn(self, conn: Connection) -> bool:
        if not self.is_postgres:
            return True  # one writer at a time anyway
        return bool(conn.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _RETENTION_LOCK_ID}))

    async def prune_deliveries(
        self, after_id: int, scan: int, succeeded_before: float, dead_before: float | None
    ) -> Swept:
        """Look at the ``scan`` deliveries after ``after_id`` and delete those that succeeded before
        ``succeeded_before`` or died before ``dead_before`` (None: dead ones stay). Pending and held
        ones stay whatever their age. The sweep ends at deliveries too young to have expired."""
        # Nothing created after the later cutoff can have finished before either.
        latest_cutoff = succeeded_before if dead_before is None else max(succeeded_before, dead_before)

        def work(conn: Connection) -> Swept:
            if not self._prune_turn(conn):
                return Swept(0, None)
            window = (
                select(deliveries.c.id, deliveries.c.created_at)
                .where(deliveries.c.id > after_id)
                .order_by(deliveries.c.id)
                .limit(scan)
                .subquery()
            )
            last_id, newest, seen = conn.execute(
                select(func.max(window.c.id), func.max(window.c.created_at), func.count())
            ).one()
            if not seen:
                return Swept(0, None)
            expired = and_(deliveries.c.state == "succeeded", deliveries.c.completed_at < succeeded_before)
            if dead_before is not None:
                expired = or_(expired, and_(deliveries.c.state == "failed", deliveries.c.completed_at < dead_before))
            # The state is checked in the DELETE itself, so a dead delivery revived meanwhile stays.
            result = conn.execute(
                delete(deliveries).where(deliveries.c.id > after_id, deliveries.c.id <= last_id, expired)
            )
            done = seen < scan or newest >= latest_cutoff
            return Swept(int(result.rowcount), None if done else last_id)

        return await self._write(work)

    async def prune_events(self, after: tuple[float, str] | None, scan: int, before: float) -> Swept:
        """Look at the next ``scan`` events created before ``before`` (in creation order, after the
        cursor ``after``) and delete those no delivery refers to any more."""

        def work(conn: Connection) -> Swept:
            if not self._prune_turn(conn):
                return Swept(0, None)
            query = select(events.c.created_at, events.c.id).where(events.c.created_at < before)
            if after is not None:
                query = query.where(tuple_(events.c.created_at, events.c.id) > tuple_(*after))
            rows = conn.execute(query.order_by(events.c.created_at, events.c.id).limit(scan)).all()
            if not rows:
                return Swept(0, None)
            unreferenced = ~exists().where(deliveries.c.event_id == events.c.id)
            result = conn.execute(delete(events).where(events.c.id.in_([row.id for row in rows]), unreferenced))
            cursor = (rows[-1].created_at, rows[-1].id)
            return Swept(int(result.rowcount), None if len(rows) < scan else cursor)

        return await self._write(work)

    async def reclaim_pruned(self) -> None:
        """PostgreSQL: a plain VACUUM of the pruned tables makes the deleted rows' space reusable now,
        instead of whenever autovacuum gets to them, so the tables stop growing. It blocks no reader
        or writer (only schema changes and other vacuums). SQLite reuses freed pages by itself."""
        if not self.is_postgres:
            return

        def vacuum() -> None:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in PRUNED_TABLES:
                    conn.exec_driver_sql(f"VACUUM {table}")

        await asyncio.get_running_loop().run_in_executor(self._executor, vacuum)
