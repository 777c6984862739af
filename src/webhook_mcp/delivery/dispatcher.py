"""The background delivery loop: claim due deliveries in batches, send them concurrently, write
the results back in batches. Knows the store and the sender, nothing of MCP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable

from webhook_mcp.core.errors import WebhookError
from webhook_mcp.core.settings import Settings
from webhook_mcp.core.signing import secret_key, signed_headers
from webhook_mcp.core.vault import Vault
from webhook_mcp.delivery.retries import RetryPolicy
from webhook_mcp.delivery.sender import Sender, SendOutcome
from webhook_mcp.storage.records import AttemptRecord, ClaimedDelivery, HealthPolicy
from webhook_mcp.storage.store import Store

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.05
# Results sent but not yet written may reach this many batches (one being written, one gathering)
# before sending slows down: a crash repeats at most max_concurrency + UNRECORDED_BATCHES * batch_size.
UNRECORDED_BATCHES = 2
BLOCKED_RETRY = 0.05
PRUNE_INTERVAL = 300.0
PRUNE_BATCH = 500
DB_RETRY_DELAY = 0.5
MAX_DB_RETRY_DELAY = 30.0


def _backoff(failures: int) -> float:
    """Waits after consecutive database failures: 0.5 s, 1 s, 2 s … capped, so a restarting
    PostgreSQL is picked up again quickly without being hammered while it is down."""
    return float(min(MAX_DB_RETRY_DELAY, DB_RETRY_DELAY * 2 ** (failures - 1)))


def _brief(exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sender: Sender,
        settings: Settings,
        *,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sender = sender
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.policy = RetryPolicy.from_settings(settings)
        self.health = HealthPolicy(settings.auto_disable_after, settings.auto_disable_min_failures)
        self._clock = clock
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._results_ready = asyncio.Event()
        self._has_results = asyncio.Event()
        self._results: list[AttemptRecord] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._held: Counter[int] = Counter()  # per webhook: queued here or being sent
        self._sending: Counter[int] = Counter()
        # Per webhook: what this worker may send at once, its limit less the other workers'
        # leases as its last claim counted them (see ``Store.claim``).
        self._send_limit: dict[int, int] = {}
        self._queued: dict[int, deque[tuple[float, ClaimedDelivery]]] = {}  # (lease ends, delivery)
        self._queued_total = 0
        self._waiting: deque[int] = deque()  # webhooks with queued deliveries they may send, in turn
        self._parked: set[int] = set()  # webhooks with queued deliveries, at their send limit
        self._handing_back: set[asyncio.Task[None]] = set()
        self._keys: dict[str, bytes] = {}
        self._vault = Vault(settings.secret_key)
        self._writing = 0
        self._max_tasks = settings.max_concurrency
        self._min_claim = max(1, min(settings.batch_size, settings.max_concurrency) // 4)
        # Deliveries leased ahead wait in the queue for at most about one send, so the lease
        # must cover two sends and the results' write; with a shorter lease, lease no more than
        # may be sent.
        limit = settings.per_endpoint_concurrency
        self._ahead = limit if settings.lease_seconds >= 3 * settings.delivery_timeout else 0
        self._refill_at = limit + self._ahead // 2 if self._ahead else limit // 2
        self._stopping = False
        self.delivered = 0

    def wake(self) -> None:
        """Called after a publish in this process, so new work starts without waiting for a poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        """Deliver until cancelled; on cancellation finish what is in flight (bounded) and flush."""
        logger.info("dispatcher %s started", self.worker_id)
        flusher = asyncio.create_task(self._flush_loop(), name="webhook-mcp-flush")
        pruner = asyncio.create_task(self._prune_loop(), name="webhook-mcp-prune")
        listener = asyncio.create_task(self.store.listen_for_work(self.wake), name="webhook-mcp-listen")
        try:
            await self._claim_loop()
        finally:
            self._stopping = True
            pruner.cancel()
            listener.cancel()
            await asyncio.gather(*self._handing_back)
            await self._release_queued(set(self._queued))
            await self._finish_in_flight()
            # Let the flusher finish the write it may be in (never cancel a batch half-way).
            self._has_results.set()
            try:
                await flusher
            except Exception:
                logger.exception("the result writer failed while stopping")
            for helper in (pruner, listener):
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            await self._flush_remaining()
            logger.info("dispatcher %s stopped after %d successful deliveries", self.worker_id, self.delivered)

    def _unrecorded_excess(self) -> int:
        """Results not yet written beyond their allowance count against sending and claiming: a
        slow database throttles both, and a crash can only repeat a bounded number of sends."""
        backlog = len(self._results) + self._writing
        return max(0, backlog - UNRECORDED_BATCHES * self.settings.batch_size)

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

    async def _claim_loop(self) -> None:
        cfg = self.settings
        failures = 0
        last_deep_claim = -math.inf
        while True:
            capacity, ahead_limit = self._capacity()
            # Small claims cost a transaction each for little work: wait until a quarter is free.
            if capacity <= 0 or (capacity < self._min_claim and (self._tasks or self._queued_total)):
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            self._wake.clear()
            want = min(cfg.batch_size, capacity)
            now = self._clock()
            # Looking past endpoints at their limit can mean scanning their whole backlog: at
            # most once per poll interval, which bounds how long other endpoints wait behind them.
            look_past_full = now - last_deep_claim >= cfg.poll_interval
            blocked: list[int] = []
            others: dict[int, int] = {}
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
                    look_past_full=look_past_full,
                    blocked=blocked,
                    others=others,
                )
            except Exception as exc:
                # Whatever was claimed comes due again when its lease ends.
                failures += 1
                delay = _backoff(failures)
                logger.warning("claiming deliveries failed (%s); retrying in %.1fs", _brief(exc), delay)
                await self._wait_for_wake(delay)
                continue
            if look_past_full:
                last_deep_claim = now
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
                logger.warning("delivery %s waited too long to be sent; it comes due again", delivery.id)
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
        if not released:
            return
        self._slot_free.set()
        try:
            await self.store.release(released, self._clock())
        except Exception as exc:
            logger.warning("handing back %d queued deliveries failed (%s)", len(released), _brief(exc))

    async def _wait_for_wake(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives together with the wake-up, and the dispatcher would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

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
                logger.error("not sending to webhook %s: %s", delivery.webhook_id, exc)
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
            if len(self._results) >= self.settings.batch_size:
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
                await asyncio.sleep(_backoff(failures))
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
        try:
            recorded = await self.store.record_attempts(batch, now, self.health)
        except Exception as exc:
            logger.warning("writing %d delivery results failed (%s); will retry", len(batch), _brief(exc))
            self._results = batch + self._results
            return False
        finally:
            self._writing = 0
        self.delivered += sum(1 for r in batch if r.success)
        for hook_id in recorded.disabled:
            logger.warning("webhook %s disabled after failed deliveries", hook_id)
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

    async def _finish_in_flight(self) -> None:
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.settings.delivery_timeout + 1)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _flush_remaining(self) -> None:
        for _ in range(3):
            if not self._results or await self._flush():
                return
        logger.error(
            "could not record %d results; those deliveries will be retried after their lease", len(self._results)
        )

    async def _prune_loop(self) -> None:
        retention = self.settings.log_retention_days * 86400
        while True:
            try:
                removed = PRUNE_BATCH
                total = 0
                while removed == PRUNE_BATCH and not self._stopping:
                    removed = await self.store.prune_attempts(self._clock() - retention, PRUNE_BATCH)
                    total += removed
                    await asyncio.sleep(0)
                if total:
                    logger.info("pruned %d attempt log rows older than %g days", total, retention / 86400)
                await self.store.forget_expired_secrets(self._clock())
            except Exception as exc:
                logger.warning("pruning old attempt logs failed (%s); trying again later", _brief(exc))
            await asyncio.sleep(PRUNE_INTERVAL)
