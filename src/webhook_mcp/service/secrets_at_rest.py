"""Signing secrets encrypted at rest by default, and the start-up pass that keeps them so.

Where the key comes from:

- ``WEBHOOK_MCP_SECRET_KEY`` when set (every process sharing a database needs the same one);
- else, on SQLite, a key file of its own (``WEBHOOK_MCP_SECRET_KEY_FILE``, in the user's config
  directory by default), created once with owner-only permissions: a copy of the database file or
  its backups alone does not reveal the secrets;
- else, on PostgreSQL, where several machines must share one key, start-up is refused, unless
  ``WEBHOOK_MCP_ALLOW_PLAINTEXT_SECRETS`` accepts plain text (warned about at every start).

Then every stored secret is checked against the key: plaintext ones are encrypted (and those under
an older key re-encrypted), and a missing or wrong key refuses to start, saying what to do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import or_, select

from webhook_mcp.core.errors import ConfigurationError
from webhook_mcp.core.settings import Settings
from webhook_mcp.core.vault import ENCRYPTED_PREFIX, Vault, parse_keys
from webhook_mcp.storage.schema import webhooks
from webhook_mcp.storage.store import Store

logger = logging.getLogger(__name__)

KEY_SETTING = "WEBHOOK_MCP_SECRET_KEY"
FILE_SETTING = "WEBHOOK_MCP_SECRET_KEY_FILE"
PLAINTEXT_SETTING = "WEBHOOK_MCP_ALLOW_PLAINTEXT_SECRETS"


def check_key_source(settings: Settings) -> None:
    """Refuse, before the database is touched, a PostgreSQL database without a key (unless plain text
    is explicitly allowed), and a malformed key."""
    if settings.secret_key is not None:
        Vault(settings.secret_key)
        return
    if settings.database_url.startswith("postgres") and not settings.allow_plaintext_secrets:
        raise ConfigurationError(
            f"{KEY_SETTING} is not set, so webhook signing secrets would be stored in plain text in PostgreSQL. "
            f"Set {KEY_SETTING} to the same Fernet key in every process (generate one with: python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"), '
            f"or set {PLAINTEXT_SETTING}=1 to store them unencrypted"
        )


async def open_secrets(settings: Settings, store: Store) -> Settings:
    """``settings`` with the key secrets are sealed with (read or created as above), after every
    stored secret has been brought under it. ConfigurationError, saying what to do, when a key is
    missing, wrong or unusable."""
    check_key_source(settings)
    if settings.secret_key is None and not settings.allow_plaintext_secrets and not store.is_postgres:
        key = await asyncio.to_thread(_read_key_file, settings.secret_key_file)
        if key is None:
            if await _holds_encrypted(store):
                raise ConfigurationError(
                    f"the database holds encrypted webhook secrets but the key file {settings.secret_key_file} "
                    f"does not exist; restore it, or set {KEY_SETTING} (or {FILE_SETTING}) to the key they were "
                    "encrypted with"
                )
            key = await asyncio.to_thread(_create_key_file, settings.secret_key_file)
        settings = settings.model_copy(update={"secret_key": SecretStr(key)})
        source = f"the key file {settings.secret_key_file}"
    else:
        source = KEY_SETTING
    if settings.secret_key is None:
        logger.warning(
            "webhook signing secrets are stored UNENCRYPTED (%s is set and %s is not): "
            "anyone who can read the database or its backups can sign as this service",
            PLAINTEXT_SETTING,
            KEY_SETTING,
        )
    await secure_stored(Vault(settings.secret_key), store, source)
    return settings


async def _holds_encrypted(store: Store) -> bool:
    w = webhooks.c
    found = await store.scalar(
        select(w.id)
        .where(or_(w.secret.startswith(ENCRYPTED_PREFIX), w.previous_secret.startswith(ENCRYPTED_PREFIX)))
        .limit(1)
    )
    return found is not None


async def secure_stored(vault: Vault, store: Store, source: str = KEY_SETTING) -> int:
    """Start-up check of every stored secret against the vault's key: encrypt plaintext ones (and
    re-encrypt those under an older key) when there is a key; refuse to start, saying what to do,
    when the key is wrong or missing. Returns how many rows were rewritten."""
    if not vault.encrypts:
        if await _holds_encrypted(store):
            raise ConfigurationError(
                f"the database holds encrypted webhook secrets but {KEY_SETTING} is not set; "
                "set it to the key they were encrypted with (the database alone cannot reveal them)"
            )
        return 0
    w = webhooks.c
    rows = await store.fetch_all(select(w.id, w.secret, w.previous_secret).order_by(w.id))
    changes: list[dict[str, Any]] = []
    wrong: list[int] = []
    for row in rows:
        try:
            secret = vault.reseal(row.secret)
            previous = None if row.previous_secret is None else vault.reseal(row.previous_secret)
        except ConfigurationError:
            wrong.append(row.id)
            continue
        if secret is not None or previous is not None:
            changes.append(
                {
                    "id": row.id,
                    "old_secret": row.secret,
                    "old_previous": row.previous_secret,
                    "secret": row.secret if secret is None else secret,
                    "previous": row.previous_secret if previous is None else previous,
                }
            )
    if wrong:
        raise ConfigurationError(_wrong_key_message(wrong, len(rows), source))
    if not changes:
        return 0
    written = await store.replace_secrets(changes)
    logger.info("encrypted the stored signing secrets of %d webhook(s) with %s", written, source)
    return written


def _wrong_key_message(ids: Sequence[int], total: int, source: str) -> str:
    shown = ", ".join(map(str, ids[:5])) + (", …" if len(ids) > 5 else "")
    return (
        f"{source} cannot decrypt the stored secrets of {len(ids)} of {total} webhook(s) "
        f"(id {shown}): they were encrypted with another key. Set {KEY_SETTING} to that key; "
        "to change keys, set it to 'NEW_KEY,OLD_KEY' (newest first) and start once, which re-encrypts "
        "every secret with the new key."
    )


def _read_key_file(path: Path) -> str | None:
    """The key in ``path`` (None if there is no such file), checked; never quoted in errors."""
    try:
        text = path.read_text(encoding="ascii").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(
            f"cannot read the secret key file {path} ({exc}); fix it or set {FILE_SETTING}"
        ) from None
    try:
        parse_keys(text)
    except ConfigurationError:
        raise ConfigurationError(
            f"the secret key file {path} does not hold a Fernet key; restore it (the secrets stored with it "
            f"cannot be read otherwise), or point {FILE_SETTING} at the right file"
        ) from None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        logger.warning("the secret key file %s can be read by other users; run: chmod 600 %s", path, path)
    return text


def _create_key_file(path: Path) -> str:
    """A new key written to ``path`` (owner-only), or the one another process wrote first."""
    key = Fernet.generate_key().decode("ascii")
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(scratch, path)  # atomic, and never replaces a key another process made
        except FileExistsError:
            existing = _read_key_file(path)
            if existing is not None:
                return existing
            raise
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the secret key file {path} ({exc.strerror or exc}); set {FILE_SETTING} to a writable "
            f"path, or set {KEY_SETTING}"
        ) from None
    finally:
        scratch.unlink(missing_ok=True)
    logger.warning(
        "created the key that encrypts webhook signing secrets: %s (keep it; back it up apart from the database)", path
    )
    return key
