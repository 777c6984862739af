"""Signing secrets encrypted at rest by default: on SQLite with a key file of its own, on PostgreSQL
by refusing to start without a key unless plain text is explicitly allowed."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from conftest import make_settings
from webhook_mcp import ConfigurationError, Hub
from webhook_mcp.core.settings import default_database_url, default_secret_key_file
from webhook_mcp.core.vault import ENCRYPTED_PREFIX
from webhook_mcp.service import secrets_at_rest
from webhook_mcp.storage.schema import webhooks

pytestmark = pytest.mark.anyio

URL = "https://hooks.example.com/webhooks"
EVENT = "order.created"


def defaults(key_file: Path) -> dict[str, object]:
    """Settings as an operator who set nothing about secrets has them (the key file in tmp)."""
    return {"secret_key": None, "secret_key_file": key_file}


async def stored_secrets(hub: Hub) -> list[str]:
    rows = await hub.store.fetch_all(select(webhooks.c.secret).order_by(webhooks.c.id))
    return [row.secret for row in rows]


def database_bytes(sqlite_url: str) -> bytes:
    path = Path(str(make_url(sqlite_url).database))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_sqlite_without_a_key_creates_an_owner_only_key_file_and_encrypts(
    sqlite_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "config" / "webhook-mcp" / "secret.key"
    settings = make_settings(sqlite_url, **defaults(key_file))
    async with Hub.open(settings, dispatch=False) as hub:
        hook = await hub.service.create_webhook(URL, [EVENT])
        secret = (await hub.service.get_secret(hook.id)).secret
        (sealed,) = await stored_secrets(hub)
    assert sealed.startswith(ENCRYPTED_PREFIX) and secret.encode() not in database_bytes(sqlite_url)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    key = key_file.read_text()
    assert key.encode() not in database_bytes(sqlite_url)
    # The next start reads the same key (it never replaces it) and opens what the first stored.
    async with Hub.open(settings, dispatch=False) as again:
        assert (await again.service.get_secret(hook.id)).secret == secret
    assert key_file.read_text() == key


def test_the_default_key_file_is_apart_from_the_default_database() -> None:
    database = Path(str(make_url(default_database_url()).database))
    assert default_secret_key_file().parent != database.parent
    assert not default_secret_key_file().is_relative_to(database.parent)


async def test_existing_plaintext_secrets_are_encrypted_at_the_next_default_start(
    sqlite_url: str, tmp_path: Path
) -> None:
    plaintext = make_settings(sqlite_url, secret_key=None, allow_plaintext_secrets=True)
    async with Hub.open(plaintext, dispatch=False) as old:
        hook = await old.service.create_webhook(URL, [EVENT])
        secret = (await old.service.get_secret(hook.id)).secret
        assert await stored_secrets(old) == [secret]
    key_file = tmp_path / "secret.key"
    async with Hub.open(make_settings(sqlite_url, **defaults(key_file)), dispatch=False) as hub:
        (sealed,) = await stored_secrets(hub)
        assert sealed.startswith(ENCRYPTED_PREFIX)
        assert (await hub.service.get_secret(hook.id)).secret == secret
    assert secret.encode() not in database_bytes(sqlite_url)


async def test_a_lost_key_file_refuses_to_start_and_is_not_replaced(sqlite_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    settings = make_settings(sqlite_url, **defaults(key_file))
    async with Hub.open(settings, dispatch=False) as hub:
        await hub.service.create_webhook(URL, [EVENT])
    key_file.unlink()
    with pytest.raises(ConfigurationError) as info:
        async with Hub.open(settings, dispatch=False):
            pass
    assert f"the key file {key_file} does not exist" in str(info.value) and "restore it" in str(info.value)
    assert not key_file.exists()


@pytest.mark.parametrize("content", ["not a key at all\n", ""])
async def test_a_damaged_key_file_is_a_clear_error_that_never_quotes_it(
    sqlite_url: str, tmp_path: Path, content: str
) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(content)
    with pytest.raises(ConfigurationError) as info:
        async with Hub.open(make_settings(sqlite_url, **defaults(key_file)), dispatch=False):
            pass
    assert f"the secret key file {key_file} does not hold a Fernet key" in str(info.value)
    assert content.strip() == "" or content.strip() not in str(info.value)


async def test_an_unwritable_key_location_is_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = make_settings(sqlite_url, **defaults(blocker / "secret.key"))
    with pytest.raises(ConfigurationError, match=r"the secret key file .*WEBHOOK_MCP_SECRET_KEY_FILE"):
        async with Hub.open(settings, dispatch=False):
            pass


def test_processes_creating_the_key_file_at_once_agree_on_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    keys: list[str] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        keys.append(secrets_at_rest._create_key_file(key_file))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(keys) == {key_file.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no scratch files left


async def test_postgresql_without_a_key_refuses_to_start_before_touching_the_database(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        async with Hub.open(make_settings(postgres_url, secret_key=None), dispatch=False):
            pass
    message = str(info.value)
    assert "WEBHOOK_MCP_SECRET_KEY is not set" in message and "WEBHOOK_MCP_ALLOW_PLAINTEXT_SECRETS=1" in message
    with psycopg.connect(postgres_url) as connection:
        tables = connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert tables.fetchone() == (0,)  # refused before migrating


async def test_postgresql_with_plaintext_allowed_starts_and_warns(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(postgres_url, secret_key=None, allow_plaintext_secrets=True)
    with caplog.at_level(logging.WARNING, logger="webhook_mcp.service.secrets_at_rest"):
        async with Hub.open(settings, dispatch=False) as hub:
            hook = await hub.service.create_webhook(URL, [EVENT])
            secret = (await hub.service.get_secret(hook.id)).secret
            assert await stored_secrets(hub) == [secret]
    assert any("UNENCRYPTED" in record.getMessage() for record in caplog.records)


def test_the_key_file_is_named_in_help() -> None:
    command = [sys.executable, "-m", "webhook_mcp.interfaces.cli", "--help"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "WEBHOOK_MCP_SECRET_KEY_FILE" in text and str(default_secret_key_file()) in text
    assert "WEBHOOK_MCP_ALLOW_PLAINTEXT_SECRETS" in text
