"""Signing secrets: showing one with how to verify, and rotation with a grace period."""

from __future__ import annotations

import math

from webhook_mcp.core import models
from webhook_mcp.core.errors import InvalidArgumentError, NotFoundError
from webhook_mcp.core.signing import generate_secret
from webhook_mcp.service.base import ServiceBase, rotation_ends

DEFAULT_GRACE_HOURS = 24.0
MAX_GRACE_HOURS = 720.0
VERIFY_HINT = (
    "Verify each request with the Standard Webhooks library: "
    "standardwebhooks.Webhook(secret).verify(raw_body, headers) (or svix.webhooks.Webhook); "
    "it checks the HMAC-SHA256 in webhook-signature over 'webhook-id.webhook-timestamp.body' "
    "and rejects timestamps more than 5 minutes old. In Python, webhook_mcp.verify(raw_body, headers, secret) "
    "does the same. During a rotation's grace period requests carry two signatures (new and previous "
    "secret); either secret verifies."
)


class SecretOperations(ServiceBase):
    """Showing and rotating signing secrets."""

    async def get_secret(self, webhook_id: int) -> models.WebhookSecret:
        row = await self._row(webhook_id)
        return models.WebhookSecret(
            id=row.id,
            secret=self._vault.reveal(row.secret),
            previous_secret_expires_at=models.to_datetime(rotation_ends(row, self._clock())),
            how_to_verify=VERIFY_HINT,
        )

    async def rotate_secret(self, webhook_id: int, grace_hours: float = DEFAULT_GRACE_HOURS) -> models.RotatedSecret:
        """Issue a new secret; the replaced one keeps signing beside it for ``grace_hours``. Only the
        newest previous secret is kept: rotating again during a grace period drops the older one."""
        if not (math.isfinite(grace_hours) and 0 <= grace_hours <= MAX_GRACE_HOURS):
            raise InvalidArgumentError(
                f"grace_hours must be between 0 (switch at once) and {MAX_GRACE_HOURS:g} (30 days), "
                f"got {grace_hours}; the default {DEFAULT_GRACE_HOURS:g} gives receivers a day to switch"
            )
        secret = generate_secret()
        now = self._clock()
        expires = now + grace_hours * 3600 if grace_hours > 0 else None
        result = await self.store.rotate_secret(webhook_id, self._vault.seal(secret), expires, now)
        if result is None:
            raise NotFoundError(f"no webhook with id {webhook_id}; call list_webhooks to see the ids")
        row, replaced_expiry = result
        await self._changed(webhook_id)
        dropped = replaced_expiry is not None and replaced_expiry > now
        ends = models.to_datetime(expires)
        if ends is None:
            steps = (
                "Requests are signed with the new secret only, from now on: put it in the receiver's "
                "configuration at once (until then its verification fails and deliveries are retried), "
                "then call test_webhook."
            )
        else:
            steps = (
                f"Until {ends.isoformat(timespec='seconds')} every request carries two signatures in "
                "webhook-signature, one per secret, so the receiver accepts it with either. Put the new "
                "secret in the receiver's configuration before then, call test_webhook to check, and "
                "after that only the new secret signs."
            )
        if dropped:
            steps += (
                " The previous secret kept from the earlier rotation (still in its grace period) stopped "
                "signing too: a receiver still on it fails verification now."
            )
        return models.RotatedSecret(
            id=row.id,
            secret=secret,
            previous_secret_expires_at=ends,
            grace_hours=grace_hours,
            dropped_older_secret=dropped,
            next_steps=steps,
        )
