"""What the dispatcher's parts share: its settings, its store and sender, and the counts that
tie claiming, sending and writing results together."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable

from webhook_mcp.core.settings import Settings
from webhook_mcp.core.vault import Vault
from webhook_mcp.delivery.deferred import SendsDeliveries
from webhook_mcp.delivery.retries import RetryPolicy
from webhook_mcp.storage.records import AttemptRecord, ClaimedDelivery, HealthPolicy
from webhook_mcp.storage.store import Store

# Results sent but not yet written may reach this many batches (one being written, one gathering)
# before sending slows down: a crash repeats at most max_concurrency + UNRECORDED_BATCHES * batch_size.
UNRECORDED_BATCHES = 2
DB_RETRY_DELAY = 0.5
MAX_DB_RETRY_DELAY = 30.0


def backoff(failures: int) -> float:
    """Waits after consecutive database failures: 0.5 s, 1 s, 2 s … capped, so a restarting
    PostgreSQL is picked up again quickly without being hammered while it is down."""
    return float(min(MAX_DB_RETRY_DELAY, DB_RETRY_DELAY * 2 ** (failures - 1)))


def brief(exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DispatcherState:
    """The state of one worker's delivery loop, read and written by the claim loop
    (``Dispatcher``), the send pool (``SendPool``) and the result writer (``ResultWriter``)."""

    def __init__(
        self,
        store: Store,
        sender: SendsDeliveries,
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
        self._stop_deadline: float | None = None  # time.monotonic() by which sends in flight must end
        self.delivered = 0
        self.heartbeat = time.monotonic()  # the claim loop's last turn, for readiness checks

    def _unrecorded_excess(self) -> int:
        """Results not yet written beyond their allowance count against sending and claiming: a
        slow database throttles both, and a crash can only repeat a bounded number of sends."""
        backlog = len(self._results) + self._writing
        return max(0, backlog - UNRECORDED_BATCHES * self.settings.batch_size)
