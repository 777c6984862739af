"""The store's foundation: an engine, a database thread pool, and how a transaction runs."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, Executable, Row, select, true

from webhook_mcp.storage.engine import READ_ONLY_OPTION
from webhook_mcp.storage.pipeline import ConnectionTransaction, HotTransaction, PipelinedRunner, driver_rows
from webhook_mcp.storage.schema import webhooks
from webhook_mcp.storage.sql import QueueSql
from webhook_mcp.storage.sql.postgresql import POSTGRES
from webhook_mcp.storage.sql.sqlite import SQLITE

WORK_CHANNEL = "webhook_mcp_work"
MAX_WEBHOOK_ID = 2**31 - 1
MAX_ROW_ID = 2**63 - 1

T = TypeVar("T")


class StoreBase:
    """Each operation is one transaction run whole on a database thread: one hop from the event
    loop per transaction instead of one per statement, which keeps claims fast while hundreds of
    deliveries share the loop. SQLite gets a single thread (it has one writer anyway).

    A store sees every tenant; ``scoped(tenant_id)`` gives a view of the same store that sees one
    tenant's rows only: every query that takes an id filters by ``tenant_id`` too, so no id can
    reach another tenant's row."""

    # None: every tenant (the dispatcher, the operator); else the one tenant this view sees.
    tenant_id: int | None = None

    def __init__(self, engine: Engine, threads: int = 8) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        threads = threads if self.is_postgres else 1
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook-mcp-db")
        self._queue_sql: QueueSql = POSTGRES if self.is_postgres else SQLITE
        self._pipelined = PipelinedRunner(engine) if self.is_postgres else None

    def scoped(self, tenant_id: int) -> Self:
        """This store, seeing only ``tenant_id``'s rows; it shares the engine and threads (close
        the store it came from, not the view)."""
        view = copy.copy(self)
        view.tenant_id = tenant_id
        return view

    def _in_scope(self, tenant_column: Any) -> ColumnElement[bool]:
        """The condition that keeps a query inside this view's tenant (none for the full store)."""
        return true() if self.tenant_id is None else tenant_column == self.tenant_id

    def _hooks_in_scope(self, webhook_id_column: ColumnElement[int]) -> ColumnElement[bool]:
        """The same for rows that belong to a webhook (deliveries, attempts, rollups, counts): their
        webhook is one of this view's tenant's. ``true()``, which SQLAlchemy leaves out of a WHERE
        it is ANDed into, for the full store: the dispatcher's and operator's queries do not change."""
        if self.tenant_id is None:
            return true()
        tenants_hooks = select(webhooks.c.id).where(webhooks.c.tenant_id == self.tenant_id)
        return webhook_id_column.in_(tenants_hooks)

    def _sees_webhook(self, conn: Connection, webhook_id: int) -> bool:
        """Whether this view may touch the webhook's rows (always, for the full store: no query)."""
        if self.tenant_id is None:
            return True
        query = select(webhooks.c.id).where(webhooks.c.id == webhook_id, webhooks.c.tenant_id == self.tenant_id)
        return conn.execute(query).first() is not None

    async def _own_webhooks(self, webhook_ids: Collection[int]) -> set[int]:
        """Which of these webhooks this view's tenant owns (all of them, for the full store)."""
        if self.tenant_id is None:
            return set(webhook_ids)
        w = webhooks.c
        query = select(w.id).where(w.id.in_(list(webhook_ids)), w.tenant_id == self.tenant_id)
        return set(await self._read(lambda conn: conn.scalars(query).all()))

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
        """A dispatcher transaction: pipelined on PostgreSQL (see ``storage.pipeline``)."""
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
        if self._queue_sql.notify is not None:
            driver_rows(conn, self._queue_sql.notify, {"channel": WORK_CHANNEL})

    async def fetch_all(self, query: Executable) -> list[Row[Any]]:
        """Ad-hoc reads, for tests and tools outside the service."""
        return await self._read(lambda conn: list(conn.execute(query).all()))

    async def scalar(self, query: Executable) -> Any:
        return await self._read(lambda conn: conn.scalar(query))
