"""Our signatures verify with the Standard Webhooks and Svix receiver libraries."""

from __future__ import annotations

import base64
import json
import time

import pytest
import standardwebhooks
import svix.webhooks

from webhook_mcp.signing import generate_secret, mask_secret, secret_key, sign, signed_headers


def test_secret_format() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert generate_secret() != secret
    assert mask_secret(secret) == f"whsec_…{secret[-4:]}"


def test_known_vector_from_the_standard_webhooks_spec() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret_key(secret), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_headers_verify_with_standardwebhooks_and_svix() -> None:
    secret = generate_secret()
    body = json.dumps({"id": "evt_1", "type": "order.created", "data": {"total": 4200}}).encode()
    headers = signed_headers(secret_key(secret), "evt_1", int(time.time()), body)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("webhook-mcp/")
    assert standardwebhooks.Webhook(secret).verify(body, headers)["data"]["total"] == 4200
    svix.webhooks.Webhook(secret).verify(body, headers)  # raises WebhookVerificationError on mismatch


def test_tampering_is_detected() -> None:
    secret = generate_secret()
    body = b'{"amount": 100}'
    headers = signed_headers(secret_key(secret), "evt_2", int(time.time()), body)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(b'{"amount": 999}', headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(generate_secret()).verify(body, headers)
