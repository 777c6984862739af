"""The dispatcher's hot transactions, run with as few round trips as the driver allows.

Under load a round trip from a database thread costs far more than the server's work on it
(0.7-1 ms more, measured): the server and then the thread must be scheduled again, and the
thread must take the GIL, while the event loop competes for the same cores. On PostgreSQL
a hot transaction therefore runs on a connection kept in pipeline mode, where ``BEGIN`` travels
with the first statement, statements whose result is not needed travel with the next one, and
``COMMIT`` with the last: a claim costs two waits where a SQLAlchemy transaction cost six.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection

T = TypeVar("T")
# Kept open between runs: a claim and a batch of results. More concurrent runs (rare) give their
# connection back to the pool, which is sized for one connection per database thread plus these.
IDLE_SLOTS = 2
Params = Mapping[str, Any]


def driver_rows(conn: Connection, statement: str, params: Params | Sequence[Params]) -> list[tuple[Any, ...]]:
    """Run on the driver's own cursor (in the transaction ``conn`` holds): the hot statements'
    rows are plain tuples, without SQLAlchemy's per-statement context and per-row objects. A list
    of parameter sets is an executemany."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if isinstance(params, Mapping):
            cursor.execute(statement, params)
        else:
            cursor.executemany(statement, params)
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        cursor.close()


class HotTransaction(Protocol):
    def fetch(self, statement: str, params: Params, *, last: bool = False) -> list[tuple[Any, ...]]:
        """The statement's rows. ``last``: nothing follows in this transaction, so on PostgreSQL
        the commit goes out with it (and the rows come back committed)."""
        ...

    def send(self, statement: str, params: Params | Sequence[Params]) -> None:
        """A statement whose result is not needed (a list of parameter sets: an executemany); on
        PostgreSQL it travels with the next fetch or the commit."""
        ...

    def after_commit(self, statement: str) -> None:
        """A statement for the session once the transaction has ended (it goes with the commit)."""
        ...


class ConnectionTransaction:
    """A hot transaction on a SQLAlchemy connection: SQLite, where a round trip is a C call."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def fetch(self, statement: str, params: Params, *, last: bool = False) -> list[tuple[Any, ...]]:
        return driver_rows(self._conn, statement, params)

    def send(self, statement: str, params: Params | Sequence[Params]) -> None:
        driver_rows(self._conn, statement, params)

    def after_commit(self, statement: str) -> None:
        raise NotImplementedError("SQLite sessions hold nothing past a transaction")


class _PipelinedTransaction:
    def __init__(self, connection: Any, pipeline: Any) -> None:
        self._connection = connection
        self._pipeline = pipeline
        self.committed = False
        self._after_commit: list[str] = []

    def fetch(self, statement: str, params: Params, *, last: bool = False) -> list[tuple[Any, ...]]:
        if self.committed:
            raise RuntimeError("this transaction has already committed")
        cursor = self._connection.execute(statement, params)
        if last:
            self.commit()
        else:
            self._pipeline.sync()
        return list(cursor.fetchall()) if cursor.description else []

    def send(self, statement: str, params: Params | Sequence[Params]) -> None:
        if self.committed:
            raise RuntimeError("this transaction has already committed")
        if isinstance(params, Mapping):
            self._connection.execute(statement, params)
        else:
            self._connection.cursor().executemany(statement, params)

    def after_commit(self, statement: str) -> None:
        if statement not in self._after_commit:
            self._after_commit.append(statement)

    def commit(self) -> None:
        self._connection.execute("COMMIT")
        for statement in self._after_commit:
            self._connection.execute(statement)
        self._pipeline.sync()
        self.committed = True


class _Slot:
    """One pooled connection, checked out for good and kept in autocommit pipeline mode (the
    transaction is opened by hand, so its ``BEGIN`` needs no round trip of its own)."""

    def __init__(self, engine: Engine) -> None:
        self._raw: PoolProxiedConnection = engine.raw_connection()
        try:
            connection: Any = self._raw.driver_connection
            connection.rollback()  # whatever a pre-ping may have opened
            connection.autocommit = True
            self.connection = connection
            self._pipeline_mode: AbstractContextManager[Any] = connection.pipeline()
            self.pipeline = self._pipeline_mode.__enter__()
        except BaseException:
            self._raw.invalidate()
            self._raw.close()
            raise

    def close(self, *, broken: bool) -> None:
        """A broken connection is dropped (the server rolls back what it had open); a sound one
        goes back to the pool as the pool handed it out."""
        try:
            self._pipeline_mode.__exit__(None, None, None)
            if not broken:
                self.connection.autocommit = False
        except Exception:
            broken = True
        if broken:
            self._raw.invalidate()
        self._raw.close()


class PipelinedRunner:
    """Runs hot transactions on PostgreSQL connections kept in pipeline mode; callers may run
    several at once (each takes its own connection). Any error drops the connection it happened
    on: the transaction dies with it, and the next run opens a fresh one."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._idle: list[_Slot] = []
        self._lock = threading.Lock()

    def run(self, work: Callable[[HotTransaction], T]) -> T:
        with self._lock:
            slot = self._idle.pop() if self._idle else None
        if slot is None:
            slot = _Slot(self._engine)
        try:
            slot.connection.execute("BEGIN")
            transaction = _PipelinedTransaction(slot.connection, slot.pipeline)
            result = work(transaction)
            if not transaction.committed:
                transaction.commit()
        except BaseException:
            slot.close(broken=True)
            raise
        with self._lock:
            keep = len(self._idle) < IDLE_SLOTS
            if keep:
                self._idle.append(slot)
        if not keep:
            slot.close(broken=False)
        return result

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for slot in idle:
            slot.close(broken=False)
