"""The running service in one object: database, catalog, sender, operations and dispatcher.
Everything that serves webhooks (MCP server, CLI, HTTP API, your own code) opens one of these."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from webhook_mcp.core.catalog import Catalog, load_catalog
from webhook_mcp.core.models import PublishedEvent
from webhook_mcp.core.settings import Settings
from webhook_mcp.delivery.deferred import DeferredSender, SendsDeliveries
from webhook_mcp.delivery.inbox import Inboxes
from webhook_mcp.service.operations import WebhookService
from webhook_mcp.service.secrets_at_rest import check_key_source, open_secrets
from webhook_mcp.storage import engine as database
from webhook_mcp.storage.store import Store

if TYPE_CHECKING:
    import httpx

    from webhook_mcp.delivery.dispatcher import Dispatcher

logger = logging.getLogger(__name__)


def new_inboxes(settings: Settings) -> Inboxes:
    return Inboxes(limit=settings.inbox_limit, ttl=settings.inbox_ttl, max_body_bytes=settings.max_payload_bytes)


async def _open_store(settings: Settings, migrate: bool) -> Store:
    """The store, its schema migrated first if ``migrate``. At the newest schema (every start
    after the first) that costs one query on the store's own engine, and Alembic is not imported."""
    pool = settings.database_pool_size
    engine = database.create_sync(settings.database_url, pool)
    try:
        if migrate and not await asyncio.to_thread(database.at_head, engine):
            await asyncio.to_thread(database.upgrade, settings.database_url)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, pool)


class Hub:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: Catalog,
        sender: SendsDeliveries,
        dispatcher: Dispatcher | None,
        inboxes: Inboxes | None = None,
    ) -> None:
        self.settings = settings
        self.inboxes = inboxes if inboxes is not None else new_inboxes(settings)
        self.store = store
        self.catalog = catalog
        self.sender = sender
        self.dispatcher = dispatcher
        self.dispatches = dispatcher is not None  # whether this process delivers (once started)
        self.dispatcher_task: asyncio.Task[None] | None = None  # set while the dispatcher runs
        self._stopped = False
        self.service = WebhookService(store, catalog, sender, settings, on_publish=self._wake, on_change=self._forget)

    def _wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _forget(self, webhook_id: int) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.forget_queued(webhook_id)

    def start_dispatcher(self) -> None:
        """Start delivering in this process (once; later calls, and calls after ``stop_dispatcher``,
        do nothing). ``Hub.open(..., defer_dispatcher=True)`` leaves this to the caller: the stdio
        server calls it after its first answer, so the dispatcher's imports are not paid before it."""
        if self.dispatcher_task is not None or self._stopped:
            return
        if self.dispatcher is None:
            from webhook_mcp.delivery.dispatcher import Dispatcher

            self.dispatcher = Dispatcher(self.store, self.sender, self.settings)
        self.dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="webhook-mcp-dispatcher")

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        migrate: bool = True,
        dispatch: bool | None = None,
        defer_dispatcher: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AsyncIterator[Hub]:
        """Open the database (migrating it to the newest schema), the HTTP sender and, unless
        ``dispatch`` is false, a background dispatcher; close them all on exit. Stored signing
        secrets are encrypted (plaintext ones now) with ``secret_key``, or on SQLite without one with
        the key in ``secret_key_file`` (created if missing; ``hub.settings`` then carries it); a
        missing or wrong key is a ConfigurationError before anything starts (see
        :mod:`webhook_mcp.service.secrets_at_rest`). With ``defer_dispatcher``, the dispatcher
        starts when the caller calls ``hub.start_dispatcher()``; the HTTP sender is always made
        at its first use."""
        settings = settings or Settings()
        catalog = load_catalog(settings.event_types_file)
        check_key_source(settings)
        store = await _open_store(settings, migrate)
        try:
            settings = await open_secrets(settings, store)
        except BaseException:
            await store.close()
            raise
        inboxes = new_inboxes(settings)
        sender = DeferredSender(
            timeout=settings.delivery_timeout,
            allowed_networks=settings.allowed_private_networks,
            max_connections=settings.max_concurrency,
            transport=transport,
            own_urls=inboxes.owns,
        )
        hub = cls(settings, store, catalog, sender, None, inboxes)
        hub.dispatches = settings.run_dispatcher if dispatch is None else dispatch
        try:
            if hub.dispatches and not defer_dispatcher:
                hub.start_dispatcher()
            yield hub
        finally:
            try:
                await hub.stop_dispatcher()
            except Exception:
                logger.exception("the dispatcher stopped with an error")
            finally:
                await hub.service.publisher.committer.aclose()
                await inboxes.aclose()
                await sender.aclose()
                await store.close()

    async def stop_dispatcher(self) -> None:
        """Stop delivering: claiming stops at once, what was claimed but not started is handed back,
        sends in flight get the shutdown grace period, results are written. Bounded: a dispatcher
        still busy a second after the grace period is cancelled."""
        self._stopped = True  # a start still scheduled (see start_dispatcher) does nothing now
        task, dispatcher = self.dispatcher_task, self.dispatcher
        if task is None or dispatcher is None:
            return
        dispatcher.stop()
        try:
            async with asyncio.timeout(self.settings.shutdown_grace + 1):
                await asyncio.shield(task)
        except TimeoutError:
            logger.warning("the dispatcher did not stop within the grace period; cancelling it")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            if not task.done():  # this stop was itself cancelled: do not leave the dispatcher behind
                task.cancel()

    async def publish(self, event_type: str, data: Any, *, idempotency_key: str | None = None) -> PublishedEvent:
        """Record an event and queue it for every enabled webhook subscribed to its type; once this
        returns, the event is durable and will be delivered (at least once)."""
        return await self.service.publish(event_type, data, idempotency_key)

    async def publish_many(self, events: Iterable[Mapping[str, Any]]) -> list[PublishedEvent]:
        """Publish several events in one transaction, all or none. Each event is a mapping like
        ``{"type": "order.created", "data": {...}, "idempotency_key": "..."}`` (the key optional);
        the results come back in the same order. If any event is invalid, nothing is published and
        InvalidBatchError lists every invalid one (``.invalid``: index -> problems). A key seen
        before (or earlier in the same batch) returns the first event with ``duplicate=True``."""
        return await self.service.publish_events([dict(e) if isinstance(e, Mapping) else e for e in events])
