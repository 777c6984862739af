"""The send pool: claimed deliveries wait in a local queue per webhook and are sent in turn, no
webhook beyond what this worker may send to it, no more at once than the process allows."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from webhook_mcp.core import metrics
from webhook_mcp.core.errors import WebhookError
from webhook_mcp.core.signing import secret_key, signed_headers
from webhook_mcp.delivery.sender import SendOutcome
from webhook_mcp.delivery.state import DispatcherState, brief
from webhook_mcp.storage.records import AttemptRecord, ClaimedDelivery

logger = logging.getLogger(__name__)


class SendPool(DispatcherState):
    def _capacity(self) -> tuple[int, int]:
        """Room to lease: to send (max_concurrency less what is being sent or could be sent from
        the queue now), and to queue ahead (as many again, less what is queued waiting for its
        endpoint). Apart, so that neither a webhook whose sends hang nor a queue that only waits
        for this process takes room from the others."""
        ready = 0
        for hook, queue in self._queued.items():
            free = self._send_limit.get(hook, self.settings.per_endpoint_concurrency) - self._sending[hook]
            ready += min(len(queue), max(0, free))
        to_send = self.settings.max_concurrency - len(self._tasks) - ready - self._unrecorded_excess()
        to_queue = self.settings.max_concurrency - (self._queued_total - ready) if self._ahead else 0
        return to_send, to_queue

    def _enqueue(self, claimed: list[ClaimedDelivery], lease_ends: float) -> None:
        for delivery in claimed:
            hook = delivery.webhook_id
            self._held[hook] += 1
            queue = self._queued.get(hook)
            if queue is None:
                queue = self._queued[hook] = deque()
                if hook not in self._parked:
                    self._waiting.append(hook)
            queue.append((lease_ends, delivery))
        self._queued_total += len(claimed)

    def _start_sends(self) -> None:
        """Send queued deliveries while the process's limit allows, taking the webhooks in turn
        so one long queue does not keep the others waiting, and no webhook past its send limit."""
        if self._stopping:
            return  # what is queued is being handed back
        limit = self.settings.max_concurrency - self._unrecorded_excess()
        per_endpoint = self.settings.per_endpoint_concurrency
        # A send that could outlast its lease might overlap another worker's: leave it to them.
        lease_needed_until = self._clock() + self.settings.delivery_timeout
        waiting = self._waiting
        while waiting and len(self._tasks) < limit:
            hook = waiting.popleft()
            queue = self._queued.get(hook)
            if not queue:
                self._queued.pop(hook, None)
                continue
            if self._sending[hook] >= self._send_limit.get(hook, per_endpoint):
                if self._sending[hook]:
                    self._parked.add(hook)  # until one of its sends ends
                else:
                    # Other workers hold every slot now: hand the queue back rather than sit on it.
                    task = asyncio.create_task(self._release_queued({hook}))
                    self._handing_back.add(task)
                    task.add_done_callback(self._handing_back.discard)
                continue
            lease_ends, delivery = queue.popleft()
            self._queued_total -= 1
            if lease_ends <= lease_needed_until:
                logger.warning(
                    "delivery %s waited too long to be sent; it comes due again",
                    delivery.id,
                    extra={"delivery_id": delivery.id, "webhook_id": hook, "event_id": delivery.event_id},
                )
                self._drop_held(hook)
            else:
                self._sending[hook] += 1
                self._tasks[delivery.id] = asyncio.create_task(self._deliver(delivery))
            if queue:
                waiting.append(hook)
            else:
                del self._queued[hook]

    def _drop_held(self, hook: int) -> None:
        """One delivery of ``hook`` left this worker's hands: sent, handed back or given up."""
        self._held[hook] -= 1
        left = self._held[hook]
        if left <= 0:
            del self._held[hook]
        if left == self._refill_at:
            self._wake.set()  # a claim's worth of the endpoint's slots is free: claim the next round
        self._slot_free.set()

    async def forget_queued(self, webhook_id: int) -> None:
        """The webhook was changed, disabled or deleted in this process: what is queued for it
        goes back to the database (and is claimed again as the webhook now is)."""
        await self._release_queued({webhook_id})

    async def _release_queued(self, webhook_ids: set[int]) -> None:
        """Hand queued, unsent deliveries back to the database (stopping, or their webhook was
        disabled or deleted); if that fails they come due again when their lease ends."""
        released = self._unqueue(webhook_ids)
        if not released:
            return
        metrics.handed_back(len(released))
        try:
            await self.store.release(released, self._clock(), owner=self.worker_id)
        except Exception as exc:
            logger.warning("handing back %d queued deliveries failed (%s)", len(released), brief(exc))

    def _unqueue(self, webhook_ids: set[int]) -> list[int]:
        """Take the webhooks' queued, unsent deliveries out of this worker's hands."""
        released: list[int] = []
        for hook in webhook_ids:
            queue = self._queued.pop(hook, None)
            self._parked.discard(hook)
            if not queue:
                continue
            released += [delivery.id for _lease_ends, delivery in queue]
            self._queued_total -= len(queue)
            self._held[hook] -= len(queue)
            if self._held[hook] <= 0:
                del self._held[hook]
        if released:
            self._slot_free.set()
        return released

    def _key(self, secret: str) -> bytes:
        """Cached per stored value, so an encrypted secret is decrypted once, not per delivery."""
        key = self._keys.get(secret)
        if key is None:
            key = self._keys[secret] = secret_key(self._vault.reveal(secret))
        return key

    def _headers(self, delivery: ClaimedDelivery, now: float) -> dict[str, str]:
        """During a rotation's grace period the previous secret signs too."""
        previous, expires = delivery.previous_secret, delivery.previous_secret_expires_at
        previous_key = self._key(previous) if previous is not None and expires is not None and now < expires else None
        return signed_headers(self._key(delivery.secret), delivery.event_id, int(now), delivery.body, previous_key)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        try:
            started = self._clock()
            try:
                headers = self._headers(delivery, started)
            except WebhookError as exc:
                # A secret this process cannot decrypt: never send unsigned; retried on schedule.
                context = {"webhook_id": delivery.webhook_id, "delivery_id": delivery.id, "event_id": delivery.event_id}
                logger.error("not sending to webhook %s: %s", delivery.webhook_id, exc, extra=context)
                outcome = SendOutcome(False, None, 0.0, f"not sent: {exc}", "", None)
            else:
                outcome = await self.sender.send(delivery.url, headers, delivery.body)
            now = self._clock()
            decision = self.policy.decide(outcome, delivery.attempt_number, now, delivery.url)
            self._results.append(
                AttemptRecord.of(
                    outcome,
                    delivery_id=delivery.id,
                    webhook_id=delivery.webhook_id,
                    event_id=delivery.event_id,
                    event_type=delivery.event_type,
                    attempt_number=delivery.attempt_number,
                    created_at=started,
                    next_state=decision.state,
                    next_attempt_at=decision.next_attempt_at,
                    disable_reason=decision.disable_reason,
                )
            )
            self._has_results.set()
        finally:
            self._tasks.pop(delivery.id, None)
            # A full batch; or the last send in flight ended with a claim's worth of results:
            # waiting would add nothing to the batch, and the slots its deliveries hold in the
            # database (a tenant at its cap, an endpoint at its limit) would stay taken meanwhile.
            gathered = len(self._results)
            if gathered >= self.settings.batch_size or (not self._tasks and gathered >= self._min_claim):
                self._results_ready.set()
            hook = delivery.webhook_id
            self._sending[hook] -= 1
            if self._sending[hook] <= 0:
                del self._sending[hook]
            if hook in self._parked:
                self._parked.discard(hook)
                self._waiting.append(hook)
            self._drop_held(hook)
            if self._waiting:
                self._start_sends()

    async def _finish_in_flight(self) -> None:
        """Sends still running when the shutdown grace period ends are cut short and handed back
        (their attempt not counted), so another worker sends them again at once."""
        tasks = dict(self._tasks)
        if not tasks:
            return
        deadline = self._stop_deadline or time.monotonic() + self.settings.shutdown_grace
        _done, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - time.monotonic()))
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        cut = [delivery_id for delivery_id, task in tasks.items() if task in pending]
        logger.warning("%d deliveries still in flight after the shutdown grace period are handed back", len(cut))
        metrics.handed_back(len(cut))
        try:
            await self.store.release(cut, self._clock(), owner=self.worker_id)
        except Exception as exc:
            logger.warning("handing back %d cut-short deliveries failed (%s)", len(cut), brief(exc))
