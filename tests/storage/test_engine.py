"""Migrations on empty real databases, and URL handling."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from conftest import make_settings
from webhook_mcp import ConfigurationError, Hub
from webhook_mcp.storage import engine as database
from webhook_mcp.storage.schema import metadata

EXPECTED_TABLES = {
    "webhooks",
    "events",
    "deliveries",
    "delivery_attempts",
    "attempt_rollups",
    "delivery_counts",
    "workers",
    "tenants",
    "tenant_tokens",
    "alembic_version",
}


def test_upgrade_creates_every_table_and_index(database_url: str) -> None:
    assert database.current_revision(database_url) is None
    database.upgrade(database_url)
    assert database.current_revision(database_url) == database.head_revision()
    engine = database.create_sync(database_url)
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == EXPECTED_TABLES
        attempt_indexes = {ix["name"] for ix in inspector.get_indexes("delivery_attempts")}
        assert {"ix_delivery_attempts_webhook_id_id", "ix_delivery_attempts_created_at"} <= attempt_indexes
        assert {"ix_deliveries_due", "ix_deliveries_leased"} <= {
            ix["name"] for ix in inspector.get_indexes("deliveries")
        }
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"migrations and tables.py disagree: {diff}"
    finally:
        engine.dispose()


@pytest.mark.anyio
async def test_upgrade_from_0001_rolls_up_existing_logs(database_url: str) -> None:
    """Stats read rollups since 0002: logs written before the upgrade must be counted too."""
    config = database._alembic_config()
    engine = database.create_sync(database_url)
    hour = 1_700_000_000 // 3600 * 3600
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
            conn.execute(
                text(
                    "INSERT INTO webhooks (url, events, secret, created_at, updated_at) "
                    "VALUES ('https://example.com/h', '[]', 'whsec_x', 0, 0)"
                )
            )
            for i, (success, ms, is_test) in enumerate(
                [(True, 5, False), (True, 40, False), (True, 12, True), (False, 400, False)]
            ):
                conn.execute(
                    text(
                        "INSERT INTO delivery_attempts (webhook_id, event_id, event_type, attempt_number, is_test, "
                        "created_at, response_ms, success) VALUES (1, :event, 'order.created', 1, :test, :at, :ms, :ok)"
                    ),
                    {"event": f"evt_{i}", "test": is_test, "at": hour + 60 * i, "ms": ms, "ok": success},
                )
    finally:
        engine.dispose()
    database.upgrade(database_url)
    async with Hub.open(make_settings(database_url), dispatch=False) as hub:
        stats = await hub.service.get_stats(1)
    assert (stats.total_attempts, stats.succeeded, stats.test_attempts, stats.succeeded_deliveries) == (4, 3, 1, 2)
    assert stats.avg_response_ms == pytest.approx(114.2)
    assert stats.p95_response_ms == 400.0 and stats.consecutive_failures == 1


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    database.upgrade(database_url)
    database.upgrade(database_url)
    assert database.current_revision(database_url) == database.head_revision()


def test_sqlite_file_and_directory_are_created(tmp_path: object) -> None:
    from pathlib import Path

    target = Path(str(tmp_path)) / "nested" / "dir" / "hooks.db"
    database.upgrade(f"sqlite:///{target}")
    assert target.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/test", "not supported"),
        ("not a url at all", "not a database URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_unusable_urls_say_what_to_use(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        database.sync_url(url)


def test_urls_pick_the_synchronous_drivers() -> None:
    assert database.sync_url("sqlite:///x.db").drivername == "sqlite+pysqlite"
    assert database.sync_url("sqlite+aiosqlite:///x.db").drivername == "sqlite+pysqlite"
    assert database.sync_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert database.sync_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+psycopg"
    assert database.sync_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="could not migrate"):
        database.upgrade("postgresql://nobody@127.0.0.1:1/nothing")


@pytest.mark.anyio
async def test_sqlite_reads_do_not_wait_for_another_process_writing(sqlite_url: str) -> None:
    """The MCP server reads while workers write: WAL readers must not queue behind a writer."""
    import sqlite3

    import anyio

    async with Hub.open(make_settings(sqlite_url), dispatch=False) as hub:
        created = await hub.service.create_webhook("https://example.com/hooks", ["order.created"])
        writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("UPDATE webhooks SET description = 'being written' WHERE id = ?", (created.id,))
            with anyio.fail_after(5):  # the busy timeout is 30 s: a waiting read would fail here
                listed = await hub.service.list_webhooks()
                stats = await hub.service.get_stats(created.id)
            assert [hook.description for hook in listed.webhooks] == [""]
            assert stats.total_attempts == 0
        finally:
            writer.rollback()
            writer.close()
