"""Standard Webhooks signatures (https://www.standardwebhooks.com), verifiable by the svix and
standardwebhooks libraries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "webhook-mcp/0.1 (+https://www.standardwebhooks.com)"


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The raw HMAC key behind a ``whsec_`` secret, decoded once per webhook, not per message."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }


def mask_secret(secret: str) -> str:
    return f"{SECRET_PREFIX}…{secret[-4:]}"
