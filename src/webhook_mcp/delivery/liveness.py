"""The dispatcher's part in worker liveness (see ``storage.liveness``): hold this worker's lock,
end the leases of workers that died, and fence this worker off when its own lock is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from webhook_mcp.delivery.result_writer import ResultWriter
from webhook_mcp.delivery.state import brief, new_worker_id

logger = logging.getLogger(__name__)

# How often a worker looks for dead workers' leases (and checks its own liveness lock).
LIVENESS_INTERVAL = 0.5


class LivenessWatch(ResultWriter):
    _registered = False
    _registration_failed = False

    async def _register(self) -> None:
        """Hold this worker's liveness lock; without it, its leases end only when they run out."""
        try:
            await self.store.register_worker(self.worker_id)
        except Exception as exc:
            if not self._registration_failed:
                logger.warning("could not register worker %s (%s); trying again", self.worker_id, brief(exc))
            self._registration_failed = True
            return
        self._registered = True
        self._registration_failed = False

    async def _unregister(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.unregister_worker(self.worker_id)

    async def _liveness_loop(self) -> None:
        """Every ``LIVENESS_INTERVAL``: end the leases of workers that died (their deliveries are
        due again at once, and their endpoints' slots free), and check this worker's own lock."""
        while True:
            await asyncio.sleep(LIVENESS_INTERVAL)
            try:
                if not self._registered:
                    await self._register()
                elif not await self.store.still_registered():
                    await self._fence()
                freed = await self.store.reap_dead_workers(self._clock())
            except Exception as exc:
                logger.warning("checking worker liveness failed (%s)", brief(exc))
                continue
            if freed:
                logger.warning("took over %d deliveries leased by workers that died", freed)
                self._wake.set()

    async def _fence(self) -> None:
        """This worker's lock went with its database connection: other workers may take its
        leases now, so it sends none of what it queued (in-flight sends finish: the duplicate
        bound), and registers again under a new id, whose old leases anyone may then end."""
        dropped = self._unqueue(set(self._queued))
        old_id, self.worker_id = self.worker_id, new_worker_id()
        logger.warning(
            "worker %s lost its liveness lock; dropped %d queued deliveries, continuing as %s",
            old_id,
            len(dropped),
            self.worker_id,
        )
        self._registered = False
        with contextlib.suppress(Exception):
            await self.store.unregister_worker(old_id)
        await self._register()
