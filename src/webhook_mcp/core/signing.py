"""Standard Webhooks signatures (https://www.standardwebhooks.com), verifiable by the svix and
standardwebhooks libraries, and ``verify`` for Python receivers."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from webhook_mcp.core.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "webhook-mcp/0.1 (+https://www.standardwebhooks.com)"
DEFAULT_TOLERANCE = 300


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The raw HMAC key behind a ``whsec_`` secret, decoded once per webhook, not per message."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.digest(key, signed, "sha256")  # one C call; hmac.new costs twice as much
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    key: bytes, msg_id: str, timestamp: int, body: bytes, previous_key: bytes | None = None
) -> dict[str, str]:
    """With ``previous_key`` (a secret rotation's grace period) the request carries both
    signatures, newest first, so a receiver holding either secret accepts it."""
    signature = sign(key, msg_id, timestamp, body)
    if previous_key is not None:
        signature += " " + sign(previous_key, msg_id, timestamp, body)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def mask_secret(secret: str) -> str:
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def _header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive look-up; the ``svix-`` names are accepted too, as svix's library does."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for candidate in (f"webhook-{name}", f"svix-{name}"):
        value = lowered.get(candidate)
        if value:
            return str(value).strip()
    raise WebhookVerificationError(f"missing header webhook-{name}; is this request from webhook-mcp?")


def _receiver_key(secret: str) -> bytes:
    text = secret.strip()
    if not text:
        raise WebhookVerificationError("the secret is empty; pass the webhook's whsec_ secret from get_webhook_secret")
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise WebhookVerificationError(
            "the secret is not a whsec_ secret or base64; pass the webhook's secret from get_webhook_secret"
        )
    return key


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Any:
    """Check a webhook request as a receiver must, and return its JSON payload.

    ``body`` is the raw request body (bytes as received; a str is UTF-8 encoded), ``headers`` any
    mapping (names case-insensitive), ``secret`` the ``whsec_`` secret (or its base64 part). The
    timestamp must be within ``tolerance`` seconds of now, either way, against replays; any one of
    the space-separated ``v1,`` signatures may match (two during a secret rotation). Raises
    ``WebhookVerificationError`` saying what failed."""
    if isinstance(body, str):
        raw = body.encode()
    elif isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
    else:
        raise TypeError(f"body must be the raw request body as bytes or str, not {type(body).__name__}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be zero or more seconds, got {tolerance}")
    key = _receiver_key(secret)
    msg_id = _header(headers, "id")
    stamp = _header(headers, "timestamp")
    signatures = _header(headers, "signature")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookVerificationError(f"webhook-timestamp {stamp[:40]!r} is not a Unix time in seconds")
    timestamp = int(stamp)
    skew = time.time() - timestamp
    if skew > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is {skew:.0f} s old, over the {tolerance:g} s tolerance: a stale or replayed "
            "request (or a clock off on one side)"
        )
    if -skew > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is {-skew:.0f} s in the future, over the {tolerance:g} s tolerance "
            "(check the clocks of sender and receiver)"
        )
    expected = sign(key, msg_id, timestamp, raw).encode()
    candidates = [part for part in signatures.split(" ") if part]
    if not any(hmac.compare_digest(candidate.encode(), expected) for candidate in candidates):
        raise WebhookVerificationError(
            "no signature in webhook-signature matches: wrong secret (get_webhook_secret shows it; "
            "after rotate_webhook_secret use the new one) or a body changed on the way (verify the raw bytes)"
        )
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise WebhookVerificationError(f"the signature is valid but the body is not JSON: {exc}") from exc
