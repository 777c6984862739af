"""Webhook secrets encrypted at rest with Fernet (``WEBHOOK_MCP_SECRET_KEY``), so a database dump
alone does not reveal them. Stored values carry a prefix ("fernet:" + token) and plaintext
``whsec_`` values are told apart from encrypted ones; the store never sees a key. Where the key
comes from and the start-up pass over stored secrets live in the service layer
(:mod:`webhook_mcp.service.secrets_at_rest`)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from webhook_mcp.core.errors import ConfigurationError

ENCRYPTED_PREFIX = "fernet:"
GENERATE_KEY_HINT = (
    'generate one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


def parse_keys(value: str) -> list[Fernet]:
    """One Fernet key, or several comma-separated (newest first) while changing keys. The error
    never quotes the value: it is a key (or a typo away from one)."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ConfigurationError(f"WEBHOOK_MCP_SECRET_KEY is set but empty; unset it, or {GENERATE_KEY_HINT}")
    keys = []
    for position, part in enumerate(parts, 1):
        try:
            keys.append(Fernet(part))
        except (ValueError, TypeError):
            which = f"key {position} of {len(parts)}" if len(parts) > 1 else "it"
            raise ConfigurationError(
                f"WEBHOOK_MCP_SECRET_KEY is not a Fernet key ({which} is not 32 url-safe base64-encoded bytes); "
                f"{GENERATE_KEY_HINT}"
            ) from None
    return keys


def is_encrypted(stored: str) -> bool:
    return stored.startswith(ENCRYPTED_PREFIX)


class Vault:
    """Seals secrets for the database and opens what it holds. Without a key, secrets are
    stored as they are and an encrypted one cannot be opened."""

    def __init__(self, key: SecretStr | str | None) -> None:
        raw = key.get_secret_value() if isinstance(key, SecretStr) else key
        keys = parse_keys(raw) if raw is not None else []
        self._primary = keys[0] if keys else None
        self._all = MultiFernet(keys) if keys else None

    @property
    def encrypts(self) -> bool:
        return self._primary is not None

    def seal(self, secret: str) -> str:
        if self._primary is None:
            return secret
        return ENCRYPTED_PREFIX + self._primary.encrypt(secret.encode()).decode("ascii")

    def reveal(self, stored: str) -> str:
        """The secret behind a stored value; ConfigurationError when the key is missing or wrong."""
        if not is_encrypted(stored):
            return stored
        if self._all is None:
            raise ConfigurationError(
                "a webhook secret is stored encrypted but WEBHOOK_MCP_SECRET_KEY is not set; "
                "set it to the key the secrets were encrypted with"
            )
        try:
            return self._all.decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise ConfigurationError(
                "a webhook secret cannot be decrypted with WEBHOOK_MCP_SECRET_KEY: it was encrypted with "
                "another key (every process must use the same one)"
            ) from None

    def reseal(self, stored: str) -> str | None:
        """The value to store instead, if any: plaintext gets encrypted, and a value encrypted with
        an older key (listed after the first) is re-encrypted with the first. Raises on a wrong key."""
        if self._primary is None or not is_encrypted(stored):
            return self.seal(stored)
        token = stored.removeprefix(ENCRYPTED_PREFIX).encode("ascii", "replace")
        try:
            self._primary.decrypt(token)
            return None
        except InvalidToken:
            pass
        return self.seal(self.reveal(stored))
