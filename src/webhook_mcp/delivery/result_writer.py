"""The result writer: finished attempts are written a batch at a time, with their deliveries'
next state, while sending goes on; a slow database throttles sending instead of losing results."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from webhook_mcp.core import metrics
from webhook_mcp.delivery.send_pool import SendPool
from webhook_mcp.delivery.state import backoff, brief
from webhook_mcp.storage.records import AttemptRecord

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.05


class ResultWriter(SendPool):
    async def _flush_loop(self) -> None:
        """Write results a batch at a time, or what has gathered after ``FLUSH_INTERVAL``; sleeps
        while there is nothing to write, so an idle dispatcher costs nothing here."""
        failures = 0
        while True:
            await self._has_results.wait()
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._results_ready.wait(), FLUSH_INTERVAL)
            self._results_ready.clear()
            if self._results and not await self._flush():
                if self._stopping:
                    return
                failures += 1
                await asyncio.sleep(backoff(failures))
            else:
                failures = 0
            if not self._results:
                self._has_results.clear()
                if self._stopping:
                    return

    async def _flush(self) -> bool:
        batch, self._results = self._results, []
        self._writing = len(batch)
        now = self._clock()
        started = time.perf_counter()
        try:
            recorded = await self.store.record_attempts(batch, now, self.health)
        except Exception as exc:
            logger.warning("writing %d delivery results failed (%s); will retry", len(batch), brief(exc))
            self._results = batch + self._results
            return False
        finally:
            self._writing = 0
        metrics.results_written(batch, time.perf_counter() - started)
        _log_failures(batch)
        self.delivered += sum(1 for r in batch if r.success)
        for hook_id in recorded.disabled:
            logger.warning("webhook %s disabled after failed deliveries", hook_id, extra={"webhook_id": hook_id})
        if recorded.stopped & self._queued.keys():
            await self._release_queued(set(recorded.stopped))
        self._schedule_retry_wake(batch, now)
        # The freed capacity can take more work at once.
        self._start_sends()
        self._wake.set()
        self._slot_free.set()
        return True

    def _schedule_retry_wake(self, batch: list[AttemptRecord], now: float) -> None:
        """A retry due before the next poll wakes the dispatcher itself, so short delays stay short."""
        soonest = min(
            (r.next_attempt_at for r in batch if r.next_state == "pending" and r.next_attempt_at is not None),
            default=None,
        )
        if soonest is not None and soonest - now < self.settings.poll_interval:
            asyncio.get_running_loop().call_later(max(0.0, soonest - now), self._wake.set)

    async def _flush_remaining(self) -> None:
        for _ in range(3):
            if not self._results or await self._flush():
                return
        logger.error(
            "could not record %d results; those deliveries will be retried after their lease", len(self._results)
        )


def _log_failures(batch: list[AttemptRecord]) -> None:
    """A delivery that died is worth a warning; a failed attempt to be retried, a debug line. Each
    carries its ids, which the JSON log format shows as fields."""
    for record in batch:
        if record.success or record.delivery_id is None:
            continue
        ids = {"webhook_id": record.webhook_id, "delivery_id": record.delivery_id, "event_id": record.event_id}
        if record.next_state == "failed":
            logger.warning(
                "delivery %s to webhook %s is dead after %d attempts: %s",
                record.delivery_id,
                record.webhook_id,
                record.attempt_number,
                record.error,
                extra=ids,
            )
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "delivery %s to webhook %s failed (attempt %d): %s",
                record.delivery_id,
                record.webhook_id,
                record.attempt_number,
                record.error,
                extra=ids,
            )
