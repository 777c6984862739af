"""Events: the catalog (types and exact sample payloads) and publishing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from webhook_mcp.core import models
from webhook_mcp.core.signing import secret_key, signed_headers
from webhook_mcp.service.base import ServiceBase
from webhook_mcp.service.publishing import BatchOutcome
from webhook_mcp.service.texts import envelope

SAMPLE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class EventOperations(ServiceBase):
    """The catalog as receivers see it, and publishing (through the publisher's group commit)."""

    def list_event_types(self) -> models.EventTypeList:
        types = [
            models.EventTypeInfo(name=t.name, group=t.group, description=t.description)
            for t in self.catalog.subscribable()
        ]
        return models.EventTypeList(event_types=types, total=len(types))

    def sample_payload(self, event: str) -> models.SamplePayload:
        event_type = self.catalog.get(event)
        now = self._clock()
        event_id = "evt_" + "0" * 24 + "sample00"
        body = envelope(event_id, event_type.name, now, event_type.example)
        headers = signed_headers(secret_key(SAMPLE_SECRET), event_id, int(now), body.encode())
        return models.SamplePayload(
            event=event_type.name,
            description=event_type.description,
            body=json.loads(body),
            headers=headers,
            data_schema=event_type.schema,
        )

    async def publish(self, event_type: str, data: Any, idempotency_key: str | None = None) -> models.PublishedEvent:
        """One event; an invalid one raises the error that names what to fix."""
        return await self.publisher.publish(event_type, data, idempotency_key, tenant_id=self.publishing_tenant)

    async def publish_many(self, items: Sequence[tuple[str, Any, str | None]]) -> list[models.PublishedEvent]:
        """Several (type, data, idempotency_key) events in one transaction, or none of them: an
        invalid item raises InvalidBatchError listing every invalid item by index."""
        return await self.publisher.publish_many(items, tenant_id=self.publishing_tenant)

    async def publish_events(self, items: Sequence[Any]) -> list[models.PublishedEvent]:
        """Like publish_many, for events as mappings ({"type", "data", "idempotency_key"})."""
        return await self.publisher.publish_many(items, raw=True, tenant_id=self.publishing_tenant)

    async def publish_valid(self, items: Sequence[Any]) -> BatchOutcome:
        """Events as mappings; the valid ones go in (one transaction), the invalid are reported."""
        return await self.publisher.publish_valid(items, tenant_id=self.publishing_tenant)
