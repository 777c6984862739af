"""Inbox operations: open one (or change what it answers) and read what arrived, each request's
signature checked against the secret of the webhook pointing at the inbox, the verdict in words."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from webhook_mcp.core.errors import InvalidArgumentError, NotFoundError, WebhookError
from webhook_mcp.core.models import to_datetime
from webhook_mcp.core.signing import DEFAULT_TOLERANCE, verify
from webhook_mcp.delivery.inbox import Inbox, Inboxes, ReceivedRequest
from webhook_mcp.service.operations import WebhookService

MAX_WAIT_SECONDS = 60.0
SHOWN_BODY_CHARS = 4000


class OpenedInbox(BaseModel):
    inbox_id: str
    url: str
    status: int = Field(description="What the inbox answers every request with.")
    expires_at: datetime
    next_steps: str


class InboxRequest(BaseModel):
    received_at: datetime
    method: str
    event_type: str | None
    event_id: str | None
    signature: str = Field(description="The signature check, in words.")
    signature_valid: bool | None
    headers: dict[str, str]
    body: str


class InboxContents(BaseModel):
    inbox_id: str
    url: str
    status: int
    expires_at: datetime
    received: int = Field(description="Requests received in all; the newest 50 are kept.")
    webhooks: list[int] = Field(description="Webhooks whose url is this inbox.")
    requests: list[InboxRequest]


class InboxService:
    """Inboxes as the service's caller sees them: one opened for a tenant is that tenant's, and
    another tenant's caller finds it no more than one that never existed."""

    def __init__(self, inboxes: Inboxes, service: WebhookService) -> None:
        self.inboxes = inboxes
        self.service = service

    def _find(self, inbox_id: str) -> Inbox:
        inbox = self.inboxes.find_for(inbox_id, self.service.tenant_id)
        if inbox is None:
            raise NotFoundError(f"no open inbox {inbox_id!r} (inboxes expire); call open_inbox for a new one")
        return inbox

    async def open(self, status: int = 200, inbox_id: str | None = None) -> OpenedInbox:
        if not 200 <= status <= 599:
            raise InvalidArgumentError(f"status {status} cannot be answered; send 200 to 599 (e.g. 500 to rehearse)")
        if inbox_id is not None:
            inbox = self._find(inbox_id)
            inbox.status = status
            steps = f"from now on it answers {status}; read_inbox shows what arrives"
        else:
            inbox = await self.inboxes.open(status, owner=self.service.tenant_id)
            steps = (
                "create_webhook with this url (or update_webhook), then test_webhook or send_event; "
                "read_inbox shows what arrived with the signature checked"
            )
        return OpenedInbox(
            inbox_id=inbox.id,
            url=inbox.url,
            status=inbox.status,
            expires_at=_when(inbox.expires_at),
            next_steps=steps,
        )

    async def read(self, inbox_id: str, wait_seconds: float = 0) -> InboxContents:
        """What arrived; with ``wait_seconds``, first wait (that long at most) for one more request."""
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise InvalidArgumentError(f"wait_seconds {wait_seconds:g} is out of range; send 0 to {MAX_WAIT_SECONDS:g}")
        inbox = self._find(inbox_id)
        if wait_seconds:
            await self.inboxes.wait_for_request(inbox, wait_seconds)
        secrets = await self._secrets(inbox.url)
        return InboxContents(
            inbox_id=inbox.id,
            url=inbox.url,
            status=inbox.status,
            expires_at=_when(inbox.expires_at),
            received=inbox.received,
            webhooks=sorted(secrets),
            requests=[_described(request, secrets) for request in reversed(inbox.requests)],
        )

    async def _secrets(self, url: str) -> dict[int, str]:
        hooks = (await self.service.list_webhooks()).webhooks
        return {hook.id: (await self.service.get_secret(hook.id)).secret for hook in hooks if hook.url == url}


def _when(epoch: float) -> datetime:
    moment = to_datetime(epoch)
    assert moment is not None
    return moment


def _described(request: ReceivedRequest, secrets: dict[int, str]) -> InboxRequest:
    headers = {name.lower(): value for name, value in request.headers}
    envelope = _json(request.body)
    valid, words = _signature(request, headers, secrets)
    body = request.body.decode("utf-8", errors="replace")
    if request.truncated or len(body) > SHOWN_BODY_CHARS:
        body = body[:SHOWN_BODY_CHARS] + " ...(cut)"
    return InboxRequest(
        received_at=_when(request.received_at),
        method=request.method,
        event_type=envelope.get("type") if isinstance(envelope.get("type"), str) else None,
        event_id=envelope.get("id") if isinstance(envelope.get("id"), str) else None,
        signature=words,
        signature_valid=valid,
        headers=headers,
        body=body,
    )


def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _signature(request: ReceivedRequest, headers: dict[str, str], secrets: dict[int, str]) -> tuple[bool | None, str]:
    """Checked as a receiver would at the moment it arrived (the timestamp against arrival time)."""
    if "webhook-signature" not in headers:
        return False, "unsigned: no webhook-signature header"
    if not secrets:
        return None, "not checked: no webhook has this inbox as its url"
    tolerance = max(time.time() - request.received_at, 0) + DEFAULT_TOLERANCE
    failures = []
    for webhook_id, secret in secrets.items():
        try:
            verify(request.body, headers, secret, tolerance=tolerance)
        except WebhookError as exc:
            failures.append(f"webhook {webhook_id}: {exc}")
        else:
            return True, f"valid: signed with webhook {webhook_id}'s secret"
    return False, "INVALID: " + "; ".join(failures)
