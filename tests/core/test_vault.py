"""Secrets at rest: encrypted with WEBHOOK_MCP_SECRET_KEY, migrated from plaintext on start-up,
a missing, wrong or malformed key refused before anything starts, and no secret in logs, errors
or tool outputs. Real SQLite files and real PostgreSQL databases, real receivers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from cryptography.fernet import Fernet
from mcp import Client
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from conftest import Receiver, make_settings, wait_until
from webhook_mcp import ConfigurationError, Dispatcher, Hub
from webhook_mcp.core.catalog import load_catalog
from webhook_mcp.core.signing import generate_secret
from webhook_mcp.core.vault import ENCRYPTED_PREFIX, Vault
from webhook_mcp.interfaces.mcp.server import create_server
from webhook_mcp.storage import engine as database
from webhook_mcp.storage.schema import delivery_attempts, metadata, webhooks

pytestmark = pytest.mark.anyio

EVENT = "order.created"
URL = "https://hooks.example.com/webhooks"


def new_key() -> str:
    return Fernet.generate_key().decode()


def forms(secret: str) -> list[str]:
    """Ways a secret could show up: whole, its base64 part, and its raw key bytes re-encoded."""
    body = secret.removeprefix("whsec_")
    return [secret, body, base64.urlsafe_b64encode(base64.b64decode(body)).decode()]


async def dump(hub: Hub) -> str:
    """Every row of every table, as text: what a database dump holds."""
    parts = []
    for table in metadata.sorted_tables:
        parts.extend(repr(tuple(row)) for row in await hub.store.fetch_all(select(table)))
    return "\n".join(parts)


async def stored(hub: Hub) -> list[tuple[int, str, str | None, float | None]]:
    w = webhooks.c
    rows = await hub.store.fetch_all(
        select(w.id, w.secret, w.previous_secret, w.previous_secret_expires_at).order_by(w.id)
    )
    return [(row.id, row.secret, row.previous_secret, row.previous_secret_expires_at) for row in rows]


async def attempts_logged(hub: Hub, count: int) -> bool:
    return len(await hub.store.fetch_all(select(delivery_attempts.c.id))) >= count


def sqlite_files(database_url: str) -> bytes:
    path = Path(str(make_url(database_url).database))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# --- encrypted at rest ------------------------------------------------------------------------------


async def test_secrets_are_encrypted_at_rest_and_still_sign(receiver: Receiver, database_url: str) -> None:
    settings = make_settings(database_url, secret_key=new_key())
    async with Hub.open(settings) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        old = (await hub.service.get_secret(hook.id)).secret
        new = (await hub.service.rotate_secret(hook.id, grace_hours=24)).secret
        assert (await hub.service.get_secret(hook.id)).secret == new

        ((_, secret, previous, _),) = await stored(hub)
        assert secret.startswith(ENCRYPTED_PREFIX) and previous is not None and previous.startswith(ENCRYPTED_PREFIX)
        assert len(secret) <= webhooks.c.secret.type.length  # type: ignore[attr-defined]
        everything = await dump(hub)
        for leaked in forms(old) + forms(new):
            assert leaked not in everything

        # The dispatcher opens the encrypted secrets: the delivery verifies with both.
        await hub.publish(EVENT, dict(hub.catalog.get(EVENT).example))
        (got,) = await receiver.wait_for(1)
        for either in (old, new):
            assert standardwebhooks.Webhook(either).verify(got.body, got.headers)["type"] == EVENT
        assert (await hub.service.test_webhook(hook.id)).success
        for either in (old, new):
            standardwebhooks.Webhook(either).verify(receiver.requests[1].body, receiver.requests[1].headers)

    if database_url.startswith("sqlite"):
        # The database files themselves (WAL included), not only what SQL shows.
        raw = sqlite_files(database_url)
        for leaked in forms(old) + forms(new):
            assert leaked.encode() not in raw


async def test_plaintext_rows_are_encrypted_on_start_up(database_url: str) -> None:
    plaintext = make_settings(database_url, secret_key=None, allow_plaintext_secrets=True)
    async with Hub.open(plaintext, dispatch=False) as plain:
        first = await plain.service.create_webhook(URL, [EVENT])
        second = await plain.service.create_webhook(URL + "/2", [EVENT])
        rotated = await plain.service.rotate_secret(second.id, grace_hours=5)
        secrets = {
            first.id: (await plain.service.get_secret(first.id)).secret,
            second.id: (await plain.service.get_secret(second.id)).secret,
        }
        before = await stored(plain)
        assert all(secret.startswith("whsec_") for _, secret, _, _ in before)
        old_second = before[1][2]
        assert old_second is not None and old_second.startswith("whsec_")

    settings = make_settings(database_url, secret_key=new_key())
    async with Hub.open(settings, dispatch=False) as hub:
        after = await stored(hub)
        assert all(secret.startswith(ENCRYPTED_PREFIX) for _, secret, _, _ in after)
        assert after[0][2] is None
        assert after[1][2] is not None and after[1][2].startswith(ENCRYPTED_PREFIX)
        assert after[1][3] == before[1][3]  # the grace period is untouched
        for webhook_id, secret in secrets.items():
            assert (await hub.service.get_secret(webhook_id)).secret == secret
        assert (await hub.service.get_secret(second.id)).previous_secret_expires_at == (
            rotated.previous_secret_expires_at
        )
        assert hub.service._vault.reveal(after[1][2]) == old_second
        everything = await dump(hub)
        for secret in [*secrets.values(), old_second]:
            assert secret not in everything

    # A second start with the same key rewrites nothing.
    async with Hub.open(settings, dispatch=False) as again:
        assert await stored(again) == after


async def test_encrypted_rows_without_a_key_refuse_to_start(database_url: str) -> None:
    async with Hub.open(make_settings(database_url, secret_key=new_key()), dispatch=False) as hub:
        await hub.service.create_webhook(URL, [EVENT])
    plaintext = make_settings(database_url, secret_key=None, allow_plaintext_secrets=True)
    with pytest.raises(ConfigurationError, match="encrypted webhook secrets but WEBHOOK_MCP_SECRET_KEY is not set"):
        async with Hub.open(plaintext, dispatch=False):
            pass


async def test_a_wrong_key_refuses_to_start_and_changes_nothing(database_url: str) -> None:
    right, wrong = new_key(), new_key()
    async with Hub.open(make_settings(database_url, secret_key=right), dispatch=False) as hub:
        await hub.service.create_webhook(URL, [EVENT])
        await hub.service.create_webhook(URL, [EVENT])
        # A plaintext row beside them (written by a process without the key).
        now = time.time()
        await hub.store.insert_webhook(
            {"url": URL, "events": [EVENT], "secret": generate_secret(), "created_at": now, "updated_at": now}
        )
        before = await stored(hub)
    with pytest.raises(ConfigurationError) as info:
        async with Hub.open(make_settings(database_url, secret_key=wrong), dispatch=False):
            pass
    message = str(info.value)
    assert "cannot decrypt the stored secrets of 2 of 3 webhook(s) (id 1, 2)" in message
    assert "another key" in message and "NEW_KEY,OLD_KEY" in message
    assert wrong not in message and right not in message
    async with Hub.open(make_settings(database_url, secret_key=right), dispatch=False) as hub:
        after = await stored(hub)
    # Nothing was written with the wrong key; the right one encrypted the plaintext row.
    assert after[:2] == before[:2]
    assert before[2][1].startswith("whsec_") and after[2][1].startswith(ENCRYPTED_PREFIX)


async def test_changing_keys_re_encrypts_every_secret(database_url: str) -> None:
    old_key, new = new_key(), new_key()
    async with Hub.open(make_settings(database_url, secret_key=old_key), dispatch=False) as hub:
        hook = await hub.service.create_webhook(URL, [EVENT])
        await hub.service.rotate_secret(hook.id)
        secret = (await hub.service.get_secret(hook.id)).secret
        before = await stored(hub)
    async with Hub.open(make_settings(database_url, secret_key=f"{new}, {old_key}"), dispatch=False) as hub:
        assert (await hub.service.get_secret(hook.id)).secret == secret
        ((_, current, previous, _),) = await stored(hub)
    assert (current, previous) != before[0][1:3]
    assert previous is not None
    for value in (current, previous):
        Fernet(new.encode()).decrypt(value.removeprefix(ENCRYPTED_PREFIX).encode())
    async with Hub.open(make_settings(database_url, secret_key=new), dispatch=False) as hub:
        assert (await hub.service.get_secret(hook.id)).secret == secret
    with pytest.raises(ConfigurationError, match="another key"):
        async with Hub.open(make_settings(database_url, secret_key=old_key), dispatch=False):
            pass


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not-a-fernet-key", "not a Fernet key"),
        ("", "set but empty"),
        (" , ", "set but empty"),
        ("FERNETKEY" + new_key()[9:-4], "not a Fernet key"),
        (f"{new_key()},garbage-key-text", r"key 2 of 2"),
    ],
)
async def test_malformed_keys_are_clear_start_up_errors(sqlite_url: str, key: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        async with Hub.open(make_settings(sqlite_url, secret_key=key)):
            pass
    assert "Fernet.generate_key()" in str(info.value)
    for part in key.split(","):
        if part.strip():
            assert part.strip() not in str(info.value)
    # Refused before the database was touched.
    assert not await asyncio.to_thread(Path(str(make_url(sqlite_url).database)).exists)


def run_cli(*args: str, key: str | None, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != "WEBHOOK_MCP_SECRET_KEY"}
    env["WEBHOOK_MCP_DATABASE_URL"] = database_url
    if key is not None:
        env["WEBHOOK_MCP_SECRET_KEY"] = key
    else:
        env["WEBHOOK_MCP_ALLOW_PLAINTEXT_SECRETS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "webhook_mcp.interfaces.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


async def test_the_command_line_reports_key_problems_without_a_traceback(sqlite_url: str) -> None:
    data = json.dumps(load_catalog().get(EVENT).example)
    async with Hub.open(make_settings(sqlite_url, secret_key=new_key()), dispatch=False) as hub:
        await hub.service.create_webhook(URL, [EVENT])
    for key, message in [
        ("wrong-key-material", "not a Fernet key"),
        (new_key(), "another key"),
        (None, "WEBHOOK_MCP_SECRET_KEY is not set"),
        ("", "set but empty"),
    ]:
        result = await asyncio.to_thread(run_cli, "publish", EVENT, "--data", data, key=key, database_url=sqlite_url)
        assert result.returncode == 2, result.stderr
        assert f"webhook-mcp: {message}" in result.stderr or (
            "webhook-mcp: " in result.stderr and message in result.stderr.split("webhook-mcp: ", 1)[1]
        ), result.stderr
        assert "Traceback" not in result.stderr
        assert not key or key not in result.stderr


async def test_a_dispatcher_with_another_key_never_sends_unsigned(receiver: Receiver, sqlite_url: str) -> None:
    async with Hub.open(make_settings(sqlite_url, secret_key=new_key()), dispatch=False) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        stray = Dispatcher(hub.store, hub.sender, make_settings(sqlite_url, secret_key=new_key()))
        task = asyncio.create_task(stray.run())
        try:
            await hub.publish(EVENT, dict(hub.catalog.get(EVENT).example))
            attempts = await wait_until(lambda: hub.store.fetch_all(select(delivery_attempts)))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert receiver.requests == []
        error = attempts[0].error
        assert not attempts[0].success and error.startswith("not sent:") and "another key" in error
        logs = await hub.service.get_logs(hook.id)
        assert "WEBHOOK_MCP_SECRET_KEY" in (logs.attempts[0].error or "")


async def test_the_dispatcher_decrypts_each_secret_once(
    receiver: Receiver, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: Counter[str] = Counter()
    original = Vault.reveal

    def counted(self: Vault, value: str) -> str:
        if value.startswith(ENCRYPTED_PREFIX):
            opened[value] += 1
        return original(self, value)

    monkeypatch.setattr(Vault, "reveal", counted)
    async with Hub.open(make_settings(sqlite_url, secret_key=new_key())) as hub:
        hook = await hub.service.create_webhook(receiver.url, [EVENT])
        secrets = [(await hub.service.get_secret(hook.id)).secret]
        secrets.append((await hub.service.rotate_secret(hook.id, grace_hours=1)).secret)
        opened.clear()
        await hub.service.publish_many([(EVENT, dict(hub.catalog.get(EVENT).example), None)] * 20)
        requests = await receiver.wait_for(20)
    for request in requests:
        for secret in secrets:
            standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    assert sorted(opened.values()) == [1, 1]  # the current and the previous secret, once each


def test_the_vault_keeps_plaintext_without_a_key_and_tells_forms_apart() -> None:
    secret = generate_secret()
    assert Vault(None).seal(secret) == secret
    assert Vault(None).reveal(secret) == secret
    vault = Vault(new_key())
    sealed = vault.seal(secret)
    assert sealed.startswith(ENCRYPTED_PREFIX) and secret not in sealed
    assert vault.seal(secret) != sealed  # a fresh token each time
    assert vault.reveal(sealed) == secret and vault.reveal(secret) == secret
    with pytest.raises(ConfigurationError, match="WEBHOOK_MCP_SECRET_KEY is not set"):
        Vault(None).reveal(sealed)
    with pytest.raises(ConfigurationError, match="another key"):
        Vault(new_key()).reveal(sealed)
    with pytest.raises(ConfigurationError, match="another key"):
        vault.reveal(ENCRYPTED_PREFIX + "tampered ünïcode")


# --- nothing leaks ------------------------------------------------------------------------------------


async def test_no_secret_in_logs_errors_or_outputs(
    receiver: Receiver, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = new_key()
    settings = make_settings(sqlite_url, secret_key=key)
    assert key not in repr(settings) and key not in str(settings) and key not in settings.model_dump_json()
    revealed: list[str] = []
    outputs: list[str] = []

    async def tool(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, arguments)
        texts = "\n".join(getattr(block, "text", "") for block in result.content)
        content = result.structured_content or {}
        if name in ("get_webhook_secret", "rotate_webhook_secret") and not result.is_error:
            revealed.append(content["secret"])  # where a secret is meant to be shown
        else:
            outputs.append(texts + json.dumps(content, ensure_ascii=False))
        return content

    async with Hub.open(settings) as hub, Client(create_server(hub=hub)) as client:
        hook = await tool(client, "create_webhook", {"url": receiver.url, "events": [EVENT]})
        await tool(client, "get_webhook_secret", {"id": hook["id"]})
        await tool(client, "rotate_webhook_secret", {"id": hook["id"], "grace_hours": 1})
        await tool(client, "get_webhook_secret", {"id": hook["id"]})
        await tool(client, "test_webhook", {"id": hook["id"]})
        await tool(client, "send_event", {"event": EVENT, "data": hub.catalog.get(EVENT).example})
        await receiver.wait_for(2)
        await wait_until(lambda: attempts_logged(hub, 2))
        for name, arguments in [
            ("get_webhook", {"id": hook["id"]}),
            ("list_webhooks", {}),
            ("get_webhook_logs", {"id": hook["id"]}),
            ("get_webhook_stats", {"id": hook["id"]}),
            ("update_webhook", {"id": hook["id"], "description": "orders"}),
            ("toggle_webhook", {"id": hook["id"]}),
            ("toggle_webhook", {"id": hook["id"]}),
            ("rotate_webhook_secret", {"id": hook["id"], "grace_hours": 10_000}),
            ("rotate_webhook_secret", {"id": 99}),
            ("get_webhook_sample_payload", {"event": EVENT}),
        ]:
            await tool(client, name, arguments)
    with pytest.raises(ConfigurationError) as wrong:
        async with Hub.open(make_settings(sqlite_url, secret_key=new_key())):
            pass
    outputs.append(str(wrong.value))

    # Database errors never quote their parameters (secrets are among them).
    engine = database.create_sync(sqlite_url)
    try:
        with pytest.raises(Exception) as failed, engine.connect() as conn:
            conn.execute(text("SELECT no_such_function(:s)"), {"s": revealed[0]})
        outputs.append(str(failed.value))
    finally:
        engine.dispose()

    assert len(set(revealed)) == 2 and len(outputs) > 12
    logged = caplog.text
    assert "dispatcher" in logged  # the capture saw the service's logs
    for secret in revealed:
        for leaked in forms(secret):
            assert leaked not in logged
            for output in outputs:
                assert leaked not in output
    assert key not in logged and all(key not in output for output in outputs)
