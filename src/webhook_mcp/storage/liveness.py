"""Which workers are alive, known at once when one dies, so its leases need not run out.

A worker holds a lock that its process (or its database connection) holds and the operating
system or PostgreSQL lets go of the moment either dies:

- PostgreSQL: a session advisory lock on a connection of its own, beside a row in ``workers``
  (so a lock nobody holds is known to belong to a worker that died, not to one that never
  registered). A killed process's connection closes and PostgreSQL frees the lock at once; a
  machine that vanishes is noticed by TCP keepalives (about ``KEEPALIVE_WINDOW`` seconds).
- SQLite: an ``flock`` on a file per worker beside the database (one machine): the kernel lets
  go of it when the process dies.

A paused process (SIGSTOP, a long GC, a slow disk) keeps its lock: it is never taken for dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

from webhook_mcp.storage.base import StoreBase
from webhook_mcp.storage.pipeline import driver_rows

logger = logging.getLogger(__name__)

LIVENESS_LOCK_SPACE = 0x77686D6C  # advisory lock namespace: one lock per live worker
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
KEEPALIVE_WINDOW = 5 + 2 * 3

_PG_LOCK = f"SELECT pg_advisory_lock({LIVENESS_LOCK_SPACE}, hashtext(%(id)s))"
_PG_REGISTER = "INSERT INTO workers (id, started_at) VALUES (%(id)s, %(now)s) ON CONFLICT (id) DO NOTHING"
# A registered worker whose lock can be taken (shared, for this transaction only) is dead: its
# leases end now and its registration goes. Its deliveries were due when it claimed them, so they
# take their place in the queue by age again (not behind the backlog that came due meanwhile).
# ``lease_owner IS NOT NULL`` keeps the search in the small index of leased rows.
_PG_REAP = (
    "WITH dead AS MATERIALIZED (SELECT id FROM workers "
    f"WHERE pg_try_advisory_xact_lock_shared({LIVENESS_LOCK_SPACE}, hashtext(id))), "
    "freed AS (UPDATE deliveries SET lease_owner = NULL, next_attempt_at = created_at, updated_at = %(now)s "
    "WHERE lease_owner IS NOT NULL AND lease_owner IN (SELECT id FROM dead) AND state = 'pending' "
    "AND next_attempt_at > %(now)s RETURNING 1), "
    "gone AS (DELETE FROM workers WHERE id IN (SELECT id FROM dead)) "
    "SELECT count(*) FROM freed"
)
_SQLITE_REAP = (
    "UPDATE deliveries SET lease_owner = NULL, next_attempt_at = created_at, updated_at = :now "
    "WHERE lease_owner IS NOT NULL AND lease_owner IN (SELECT value FROM json_each(:dead)) "
    "AND state = 'pending' AND next_attempt_at > :now"
)


class LivenessQueries(StoreBase):
    _liveness: Any = None  # PostgreSQL: the lock's connection; SQLite: the locked file

    def _workers_dir(self) -> Path:
        database = self.engine.url.database or ""
        # Hidden, and not named like the database's own files (``<name>-wal``...), which tools
        # and backups match by the database's name.
        return Path(database).expanduser().resolve().parent / f".{Path(database).name}.workers"

    async def register_worker(self, worker_id: str) -> None:
        """Make this worker's liveness visible until it unregisters or dies."""
        await asyncio.to_thread(self._register, worker_id)

    def _register(self, worker_id: str) -> None:
        if self.is_postgres:
            import psycopg  # only on PostgreSQL: a SQLite server never pays for the driver

            url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            conn = psycopg.connect(url, autocommit=True, **KEEPALIVE)  # type: ignore[arg-type]
            conn.execute(_PG_LOCK, {"id": worker_id})
            conn.execute(_PG_REGISTER, {"id": worker_id, "now": time.time()})
            self._liveness = conn
            return
        folder = self._workers_dir()
        folder.mkdir(exist_ok=True)
        name = hashlib.sha256(worker_id.encode()).hexdigest()[:32] + ".lock"
        handle = (folder / name).open("w")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(worker_id)
        handle.flush()
        self._liveness = handle

    async def unregister_worker(self, worker_id: str) -> None:
        """Let go of the lock, keeping the registration: whatever this worker still holds (a
        stop that could not hand everything back) is then taken over at once, as from a dead
        worker, and the registration goes with it."""
        await asyncio.to_thread(self._unregister)

    def _unregister(self) -> None:
        held, self._liveness = self._liveness, None
        if held is not None:
            held.close()

    async def still_registered(self) -> bool:
        """Whether this worker's liveness still holds: false once its PostgreSQL connection was
        lost (other workers may take its leases from then on)."""
        held = self._liveness
        if held is None or not self.is_postgres:
            return held is not None

        import psycopg

        def ping() -> bool:
            try:
                held.execute("SELECT 1")
                return True
            except psycopg.Error:
                return False

        return await asyncio.to_thread(ping)

    async def reap_dead_workers(self, now: float) -> int:
        """End the leases of workers known to be dead: due again now, and no longer counted
        against their endpoints' limits. Returns how many deliveries that freed."""
        if self.is_postgres:
            rows = await self._write(lambda conn: driver_rows(conn, _PG_REAP, {"now": now}))
            freed = int(rows[0][0])
            if freed:
                await self._write(self._announce_work)
            return freed
        dead = await asyncio.to_thread(self._dead_sqlite_workers)
        if not dead:
            return 0

        def work(conn: Connection) -> int:
            return int(conn.exec_driver_sql(_SQLITE_REAP, {"now": now, "dead": json.dumps(list(dead))}).rowcount)

        freed = await self._write(work)
        for handle in dead.values():
            with contextlib.suppress(OSError):
                os.unlink(handle.name)
            handle.close()
        return freed

    def _dead_sqlite_workers(self) -> dict[str, IO[str]]:
        """Worker files nobody holds a lock on, each locked now (so no one else reaps it too)."""
        dead: dict[str, IO[str]] = {}
        with contextlib.suppress(FileNotFoundError):
            for path in self._workers_dir().glob("*.lock"):
                handle = path.open("r")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()  # alive
                    continue
                dead[handle.read()] = handle
        return dead
