"""Our signatures verify with the Standard Webhooks and Svix receiver libraries."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import pytest
import standardwebhooks
import svix.webhooks

import webhook_mcp
from webhook_mcp import WebhookVerificationError, verify
from webhook_mcp.core.signing import generate_secret, mask_secret, secret_key, sign, signed_headers


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


# --- two signatures during a rotation -----------------------------------------------------------


def test_rotation_headers_carry_both_signatures_and_verify_with_either_secret() -> None:
    new, old, other = generate_secret(), generate_secret(), generate_secret()
    body = b'{"id":"evt_3","type":"order.created","data":{}}'
    now = int(time.time())
    headers = signed_headers(secret_key(new), "evt_3", now, body, previous_key=secret_key(old))
    first, second = headers["webhook-signature"].split(" ")
    assert first == sign(secret_key(new), "evt_3", now, body)
    assert second == sign(secret_key(old), "evt_3", now, body)
    for secret in (new, old):
        assert standardwebhooks.Webhook(secret).verify(body, headers)["id"] == "evt_3"
        svix.webhooks.Webhook(secret).verify(body, headers)
        assert verify(body, headers, secret)["id"] == "evt_3"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(body, headers, other)


# --- verify() for receivers ---------------------------------------------------------------------

BODY = b'{"id":"evt_9","type":"order.created","timestamp":"2026-11-26T19:00:00.000Z","data":{"total":4200}}'


def signed(secret: str, *, at: float | None = None, body: bytes = BODY) -> dict[str, str]:
    return signed_headers(secret_key(secret), "evt_9", int(time.time() if at is None else at), body)


class Headers(Mapping[str, str]):
    """A read-only, case-preserving mapping like a web framework's headers object."""

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def test_verify_returns_the_payload_for_bytes_or_str_and_any_header_case() -> None:
    secret = generate_secret()
    headers = signed(secret)
    assert verify(BODY, headers, secret) == json.loads(BODY)
    assert verify(BODY.decode(), headers, secret)["data"] == {"total": 4200}
    assert verify(bytearray(BODY), headers, secret)["id"] == "evt_9"
    shouting = Headers({name.title(): value for name, value in headers.items()})
    assert "Webhook-Signature" in shouting
    assert verify(BODY, shouting, secret)["id"] == "evt_9"
    # The secret without its prefix (raw base64) works too, as does svix's header naming.
    assert verify(BODY, headers, secret.removeprefix("whsec_"))["id"] == "evt_9"
    svix_named = {name.replace("webhook-", "svix-"): value for name, value in headers.items()}
    assert verify(BODY, svix_named, secret)["id"] == "evt_9"


def test_verify_accepts_signatures_made_by_the_reference_library() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign("msg_1", now, BODY.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    assert verify(BODY, headers, secret)["id"] == "evt_9"


def test_verify_rejects_a_tampered_body_and_a_wrong_secret() -> None:
    secret = generate_secret()
    headers = signed(secret)
    with pytest.raises(WebhookVerificationError, match="no signature in webhook-signature matches"):
        verify(BODY.replace(b"4200", b"9999"), headers, secret)
    with pytest.raises(WebhookVerificationError, match="wrong secret"):
        verify(BODY, headers, generate_secret())
    forged_id = {**headers, "webhook-id": "evt_other"}
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(BODY, forged_id, secret)


def test_verify_checks_the_timestamp_both_ways() -> None:
    secret = generate_secret()
    now = time.time()
    assert verify(BODY, signed(secret, at=now - 280), secret)["id"] == "evt_9"
    assert verify(BODY, signed(secret, at=now + 280), secret)["id"] == "evt_9"
    with pytest.raises(WebhookVerificationError, match=r"s old, over the 300 s tolerance"):
        verify(BODY, signed(secret, at=now - 330), secret)
    with pytest.raises(WebhookVerificationError, match=r"s in the future, over the 300 s tolerance"):
        verify(BODY, signed(secret, at=now + 330), secret)
    # A wider tolerance accepts what the default refuses; a narrower one refuses more.
    assert verify(BODY, signed(secret, at=now - 3000), secret, tolerance=3600)["id"] == "evt_9"
    with pytest.raises(WebhookVerificationError, match="over the 10 s tolerance"):
        verify(BODY, signed(secret, at=now - 60), secret, tolerance=10)
    with pytest.raises(ValueError, match="tolerance"):
        verify(BODY, signed(secret), secret, tolerance=-1)


def test_verify_accepts_any_of_several_signatures() -> None:
    secret = generate_secret()
    headers = signed(secret)
    mine = headers["webhook-signature"]
    foreign = signed(generate_secret())["webhook-signature"]
    for listed in (f"{foreign} {mine}", f"{mine} {foreign}", f"v1a,c2lnbmVk {mine}", f"{foreign}  {mine} "):
        assert verify(BODY, {**headers, "webhook-signature": listed}, secret)["id"] == "evt_9"
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(BODY, {**headers, "webhook-signature": f"{foreign} v1a,{mine[3:]}"}, secret)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_names_a_missing_header(missing: str) -> None:
    secret = generate_secret()
    headers = {k: v for k, v in signed(secret).items() if k != missing}
    with pytest.raises(WebhookVerificationError, match=f"missing header {missing}"):
        verify(BODY, headers, secret)
    with pytest.raises(WebhookVerificationError, match=f"missing header {missing}"):
        verify(BODY, {**headers, missing: ""}, secret)


@pytest.mark.parametrize("stamp", ["yesterday", "-5", "1.7e9", "", "9" * 40, "１２３"])
def test_verify_rejects_a_malformed_timestamp(stamp: str) -> None:
    secret = generate_secret()
    headers = {**signed(secret), "webhook-timestamp": stamp}
    with pytest.raises(WebhookVerificationError, match="webhook-timestamp"):
        verify(BODY, headers, secret)


def test_verify_explains_bad_secrets_and_bodies() -> None:
    secret = generate_secret()
    with pytest.raises(WebhookVerificationError, match="secret is empty"):
        verify(BODY, signed(secret), "  ")
    with pytest.raises(WebhookVerificationError, match="not a whsec_ secret"):
        verify(BODY, signed(secret), "whsec_not base64!")
    with pytest.raises(TypeError, match="raw request body"):
        verify(json.loads(BODY), signed(secret), secret)
    not_json = b"plain text"
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        verify(not_json, signed(secret, body=not_json), secret)


def test_verification_error_is_exported_and_a_webhook_error() -> None:
    assert webhook_mcp.verify is verify
    assert webhook_mcp.WebhookVerificationError is WebhookVerificationError
    assert issubclass(WebhookVerificationError, webhook_mcp.WebhookError)
