"""Pipelined hot transactions on a real PostgreSQL database: they commit, roll back, recover
from a cut connection and never share a connection between two runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from webhook_mcp.storage.engine import create_sync
from webhook_mcp.storage.pipeline import IDLE_SLOTS, ConnectionTransaction, HotTransaction, PipelinedRunner


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_sync(postgres_url, pool_size=4)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x integer PRIMARY KEY)")
    yield engine
    engine.dispose()


def _values(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT x FROM t ORDER BY x")]


def test_sent_statements_commit_with_the_last_fetch(engine: Engine) -> None:
    runner = PipelinedRunner(engine)

    def work(tx: HotTransaction) -> list[tuple[Any, ...]]:
        tx.send("INSERT INTO t VALUES (%(x)s)", {"x": 1})
        assert tx.fetch("SELECT count(*) FROM t", {}) == [(1,)]  # the sent insert ran first
        return tx.fetch("INSERT INTO t VALUES (%(x)s) RETURNING x", {"x": 2}, last=True)

    assert runner.run(work) == [(2,)]
    assert _values(engine) == [1, 2]
    runner.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_work_without_a_last_fetch_is_committed_at_its_end(engine: Engine) -> None:
    runner = PipelinedRunner(engine)
    runner.run(lambda tx: tx.send("INSERT INTO t VALUES (%(x)s)", {"x": 7}))
    assert _values(engine) == [7]
    runner.close()


def test_a_failed_statement_rolls_everything_back_and_the_next_run_works(engine: Engine) -> None:
    runner = PipelinedRunner(engine)

    def failing(tx: HotTransaction) -> None:
        tx.send("INSERT INTO t VALUES (%(x)s)", {"x": 1})
        tx.fetch("INSERT INTO t VALUES (%(x)s)", {"x": 1})  # duplicate key

    with pytest.raises(psycopg.errors.UniqueViolation):
        runner.run(failing)
    assert _values(engine) == []
    runner.run(lambda tx: tx.fetch("INSERT INTO t VALUES (%(x)s)", {"x": 3}, last=True))
    assert _values(engine) == [3]
    runner.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_nothing_may_follow_the_last_fetch(engine: Engine) -> None:
    runner = PipelinedRunner(engine)

    def too_long(tx: HotTransaction) -> None:
        tx.fetch("INSERT INTO t VALUES (%(x)s)", {"x": 1}, last=True)
        tx.send("INSERT INTO t VALUES (%(x)s)", {"x": 2})

    with pytest.raises(RuntimeError, match="already committed"):
        runner.run(too_long)
    assert _values(engine) == [1]
    runner.close()


def test_a_cut_connection_is_replaced(engine: Engine, postgres_url: str) -> None:
    runner = PipelinedRunner(engine)
    pid = runner.run(lambda tx: tx.fetch("SELECT pg_backend_pid()", {}))[0][0]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        runner.run(lambda tx: tx.fetch("SELECT 1", {}))
    new_pid = runner.run(lambda tx: tx.fetch("SELECT pg_backend_pid()", {}))[0][0]
    assert new_pid != pid
    runner.close()


def test_concurrent_runs_each_get_their_own_connection(engine: Engine) -> None:
    runner = PipelinedRunner(engine)
    both_inside = threading.Barrier(2, timeout=10)

    def work(tx: HotTransaction) -> int:
        pid = tx.fetch("SELECT pg_backend_pid()", {})[0][0]
        both_inside.wait()  # a shared connection would have to wait for the other run's end
        return int(pid)

    with ThreadPoolExecutor(2) as pool:
        pids = list(pool.map(lambda _: runner.run(work), range(2)))
    assert len(set(pids)) == 2
    runner.close()


def test_on_sqlite_a_hot_transaction_is_the_connection_s_own(tmp_path: Any) -> None:
    engine = create_sync(f"sqlite:///{tmp_path / 'hot.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x integer PRIMARY KEY)")
        tx = ConnectionTransaction(conn)
        tx.send("INSERT INTO t VALUES (:x)", {"x": 1})
        assert tx.fetch("SELECT x FROM t", {}, last=True) == [(1,)]
    engine.dispose()


def test_connections_beyond_the_kept_ones_go_back_to_the_pool(engine: Engine) -> None:
    runner = PipelinedRunner(engine)
    all_inside = threading.Barrier(IDLE_SLOTS + 1, timeout=10)

    def work(tx: HotTransaction) -> None:
        tx.fetch("SELECT 1", {})
        all_inside.wait()

    with ThreadPoolExecutor(IDLE_SLOTS + 1) as pool:
        list(pool.map(lambda _: runner.run(work), range(IDLE_SLOTS + 1)))
    assert engine.pool.checkedout() == IDLE_SLOTS  # type: ignore[attr-defined]
    runner.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
