"""The background delivery loop: claim due deliveries in batches, send them concurrently, write
the results back in batches. Knows the store and the sender, nothing of MCP.

Its parts: the claim loop (here), the send pool (``send_pool``), the result writer
(``result_writer``) and the liveness watch (``liveness``), sharing one worker's state (``state``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from webhook_mcp.core import metrics
from webhook_mcp.delivery.liveness import LivenessWatch
from webhook_mcp.delivery.retention import Retention
from webhook_mcp.delivery.state import UNRECORDED_BATCHES, backoff, brief, new_worker_id

logger = logging.getLogger(__name__)

__all__ = ["UNRECORDED_BATCHES", "Dispatcher", "new_worker_id"]

BLOCKED_RETRY = 0.05


class Dispatcher(LivenessWatch):
    """One worker's delivery loop. Give it ``hub.settings`` (not the settings the hub was opened
    with): the hub's carry the signing secrets' key, from WEBHOOK_MCP_SECRET_KEY or the key file."""

    def wake(self) -> None:
        """Called after a publish in this process, so new work starts without waiting for a poll."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming now; ``run`` then hands back what is queued, lets sends in flight finish
        within the shutdown grace period, writes every result and returns."""
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.settings.shutdown_grace
            self._wake.set()
            self._slot_free.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Deliver until stopped (or cancelled); then hand back what is queued, finish what is in
        flight within the grace period and write every result."""
        logger.info("dispatcher %s started", self.worker_id, extra={"worker_id": self.worker_id})
        flusher = asyncio.create_task(self._flush_loop(), name="webhook-mcp-flush")
        pruner = asyncio.create_task(self._prune_loop(), name="webhook-mcp-prune")
        listener = asyncio.create_task(self.store.listen_for_work(self.wake), name="webhook-mcp-listen")
        await self._register()
        watcher = asyncio.create_task(self._liveness_loop(), name="webhook-mcp-liveness")
        try:
            await self._claim_loop()
        finally:
            self.stop()
            pruner.cancel()
            listener.cancel()
            watcher.cancel()
            await asyncio.gather(*self._handing_back)
            await self._release_queued(set(self._queued))
            await self._finish_in_flight()
            # Let the flusher finish the write it may be in (never cancel a batch half-way).
            self._has_results.set()
            try:
                await flusher
            except Exception:
                logger.exception("the result writer failed while stopping")
            for helper in (pruner, listener, watcher):
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            await self._flush_remaining()
            await self._unregister()
            logger.info(
                "dispatcher %s stopped after %d successful deliveries",
                self.worker_id,
                self.delivered,
                extra={"worker_id": self.worker_id},
            )

    async def _claim_loop(self) -> None:
        cfg = self.settings
        failures = 0
        while not self._stopping:
            self.heartbeat = time.monotonic()
            capacity, ahead_limit = self._capacity()
            # Small claims cost a transaction each for little work: wait until a quarter is free.
            if capacity <= 0 or (capacity < self._min_claim and (self._tasks or self._queued_total)):
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            want = min(cfg.batch_size, capacity)
            now = self._clock()
            blocked: list[int] = []
            others: dict[int, int] = {}
            started = time.perf_counter()
            try:
                claimed = await self.store.claim(
                    self.worker_id,
                    want,
                    now,
                    cfg.lease_seconds,
                    cfg.per_endpoint_concurrency,
                    in_flight=self._held,
                    ahead=self._ahead,
                    ahead_limit=ahead_limit,
                    blocked=blocked,
                    others=others,
                    tenant_cap=cfg.tenant_max_in_flight,
                )
            except Exception as exc:
                # Whatever was claimed comes due again when its lease ends.
                failures += 1
                delay = backoff(failures)
                logger.warning("claiming deliveries failed (%s); retrying in %.1fs", brief(exc), delay)
                await self._wait_for_wake(delay)
                continue
            metrics.claimed(len(claimed), time.perf_counter() - started)
            if failures:
                logger.info("claiming deliveries works again after %d failed attempts", failures)
                failures = 0
            for hook, busy in others.items():
                self._send_limit[hook] = cfg.per_endpoint_concurrency - busy
            self._waiting.extend(self._parked)  # their limits may have grown
            self._parked.clear()
            self._enqueue(claimed, now + cfg.lease_seconds)
            self._start_sends()
            # A webhook whose sends ended while it was being claimed from has room again already.
            refill = any(self._held[hook] <= self._refill_at for hook in {d.webhook_id for d in claimed})
            if len(claimed) < want + ahead_limit and not refill:
                # Work another worker holds the lock or the slots of: look again soon, not at the
                # next poll, or this worker would rarely get its share.
                await self._wait_for_wake(min(BLOCKED_RETRY, cfg.poll_interval) if blocked else cfg.poll_interval)

    async def _wait_for_wake(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives together with the wake-up, and the dispatcher would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _prune_loop(self) -> None:
        await Retention(self.store, self.settings, self._clock).run(lambda: self._stopping)
