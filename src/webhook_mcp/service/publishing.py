"""Publishing: checking events (shape, type, schema per the validation mode, size) and storing
them through the group committer. One event, a batch (all or nothing) or a file's worth of
events (the valid ones go in) take the same checks."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook_mcp.core import models
from webhook_mcp.core.catalog import Catalog
from webhook_mcp.core.errors import (
    BatchTooLargeError,
    InvalidArgumentError,
    InvalidBatchError,
    InvalidPayloadError,
    UnknownEventTypeError,
)
from webhook_mcp.core.ids import new_event_id
from webhook_mcp.core.settings import Settings
from webhook_mcp.core.tenancy import DEFAULT_TENANT_ID
from webhook_mcp.service.committer import GroupCommitter
from webhook_mcp.service.texts import check_text, envelope
from webhook_mcp.storage.records import NewEvent, StoredEvent
from webhook_mcp.storage.store import Store

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200
EVENT_FIELDS = ("type", "data", "idempotency_key")
# PostgreSQL commits concurrently; a commit mostly waits for the server (and its WAL flush).
COMMITS_IN_FLIGHT_POSTGRES = 4


@dataclass
class BatchOutcome:
    """What a partial publish did: ``events[i]`` is item i's result, or None where item i was
    invalid (``invalid[i]`` then lists its problems, each "path: message")."""

    events: list[models.PublishedEvent | None]
    invalid: dict[int, list[str]] = field(default_factory=dict)


class EventShapeError(InvalidArgumentError):
    """An event that is not ``{"type", "data", "idempotency_key"}``; ``problems`` name each field
    ("event: ..." for the event as a whole)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def event_fields(item: Any) -> tuple[str, Any, str | None]:
    """An event as sent over HTTP, in an NDJSON line or to ``publish_many``: a mapping with
    ``type``, ``data`` and an optional ``idempotency_key``; anything else is refused, field by field."""
    if not isinstance(item, dict):
        raise EventShapeError(['event: must be a JSON object: {"type": ..., "data": {...}}'])
    event_type, data, key = item.get("type"), item.get("data"), item.get("idempotency_key")
    problems = []
    if not isinstance(event_type, str):
        problems.append("type: must be an event type name such as order.created")
    if not isinstance(data, dict):
        problems.append("data: must be a JSON object")
    if key is not None and not isinstance(key, str):
        problems.append("idempotency_key: must be a string")
    unknown = sorted(str(name) for name in item if name not in EVENT_FIELDS)
    if unknown:
        problems.append(f"{', '.join(unknown)}: unknown field(s); allowed: {', '.join(EVENT_FIELDS)}")
    if problems:
        raise EventShapeError(problems)
    return str(event_type), data, key


_PATHED = re.compile(r"^(type|idempotency_key|data(?:[.\[][^\s:]*)?): ")
_LEADING_FIELD = re.compile(r"^(type|idempotency_key|data) ")


def _with_path(problem: str) -> str:
    """ "data.total: ..." stays; "data must be ..." becomes "data: must be ..."; a problem with
    the whole event ("event body is ... bytes") is about its data."""
    if _PATHED.match(problem):
        return problem
    leading = _LEADING_FIELD.match(problem)
    if leading:
        return f"{leading.group(1)}: {problem[leading.end() :]}"
    return f"data: {problem}"


def item_problems(exc: InvalidArgumentError) -> list[str]:
    """An item's problems as "path: message", paths relative to the event (type, data.total, ...)."""
    if isinstance(exc, UnknownEventTypeError):
        return [f"type: {exc}"]
    if isinstance(exc, EventShapeError):
        return exc.problems
    listed = getattr(exc, "problems", None)
    if isinstance(listed, list):
        return [_with_path(str(p)) for p in listed]
    if str(exc).startswith("event type ") and "cannot be subscribed" in str(exc):
        return [f"type: {exc}"]
    return [_with_path(str(exc))]


class Publisher:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        settings: Settings,
        *,
        on_publish: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self._on_publish = on_publish
        self._clock = clock
        in_flight = COMMITS_IN_FLIGHT_POSTGRES if store.is_postgres else 1
        self.committer: GroupCommitter[NewEvent, StoredEvent] = GroupCommitter(self._commit, in_flight=in_flight)

    async def _commit(self, new: list[NewEvent]) -> list[StoredEvent]:
        from webhook_mcp.core import metrics  # prometheus_client: not before the first publish

        now = self._clock()
        stored = await self.store.publish(new, now, now - self.settings.idempotency_ttl)
        metrics.published(s.type for s in stored if not s.duplicate)
        if self._on_publish and any(s.queued for s in stored):
            self._on_publish()
        return stored

    def _schema_problems(self, event_type: str, data: Any) -> list[str]:
        """Problems the validation mode lets through (warn), or raises (reject)."""
        if not isinstance(data, dict):
            raise InvalidPayloadError(event_type, ["data must be a JSON object"])
        mode = self.settings.event_validation
        if mode == "off":
            return []
        problems = self.catalog.problems(event_type, data)
        if problems and mode == "reject":
            raise InvalidPayloadError(event_type, problems)
        return problems

    def check(
        self, event_type: str, data: Any, idempotency_key: str | None, now: float, tenant_id: int = DEFAULT_TENANT_ID
    ) -> NewEvent:
        """The event ready to store, or an InvalidArgumentError saying what to fix."""
        kind = self.catalog.require_subscribable(event_type)
        if not isinstance(data, dict):
            raise InvalidPayloadError(kind.name, ["data must be a JSON object"])
        event_id = new_event_id()
        body = envelope(event_id, kind.name, now, data)  # first: it names a NaN's path exactly
        problems = self._schema_problems(kind.name, data)
        if idempotency_key is not None:
            if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
                raise InvalidArgumentError(
                    f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters, got {len(idempotency_key)}"
                )
            check_text("idempotency_key", idempotency_key)
        try:
            size = len(body) if body.isascii() else len(body.encode())
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                f"data contains {body[exc.start]!r}, an unpaired surrogate that is not valid Unicode; send UTF-8 text"
            ) from exc
        if size > self.settings.max_payload_bytes:
            raise InvalidArgumentError(
                f"event body is {size} bytes; the limit is {self.settings.max_payload_bytes} "
                "(WEBHOOK_MCP_MAX_PAYLOAD_BYTES). Send less data, e.g. ids receivers can look up."
            )
        recorded = None
        if problems:
            logger.warning("event %s (%s) accepted despite: %s", event_id, kind.name, "; ".join(problems))
            recorded = json.dumps(problems, ensure_ascii=False)
        return NewEvent(event_id, kind.name, body, idempotency_key, recorded, tenant_id)

    async def _store(self, new: Sequence[NewEvent]) -> list[models.PublishedEvent]:
        stored = await self.committer.submit(new)
        # Built from values the store just returned: no validation to pay for, per event.
        return [
            models.PublishedEvent.model_construct(
                event_id=s.id,
                type=s.type,
                queued=s.queued,
                duplicate=s.duplicate,
                warnings=[] if s.duplicate or n.problems is None else json.loads(n.problems),
            )
            for s, n in zip(stored, new, strict=True)
        ]

    async def publish(
        self, event_type: str, data: Any, idempotency_key: str | None, *, tenant_id: int = DEFAULT_TENANT_ID
    ) -> models.PublishedEvent:
        (published,) = await self._store([self.check(event_type, data, idempotency_key, self._clock(), tenant_id)])
        return published

    def _check_all(
        self, items: Sequence[Any], *, raw: bool, tenant_id: int
    ) -> tuple[list[NewEvent | None], dict[int, list[str]]]:
        if len(items) > self.settings.max_batch_events:
            raise BatchTooLargeError(
                f"the batch has {len(items)} events; the limit is {self.settings.max_batch_events} "
                "(WEBHOOK_MCP_MAX_BATCH_EVENTS): split it into smaller batches"
            )
        now = self._clock()
        checked: list[NewEvent | None] = []
        invalid: dict[int, list[str]] = {}
        for index, item in enumerate(items):
            try:
                event_type, data, key = event_fields(item) if raw else item
                checked.append(self.check(event_type, data, key, now, tenant_id))
            except InvalidArgumentError as exc:
                checked.append(None)
                invalid[index] = item_problems(exc)
        return checked, invalid

    async def publish_many(
        self, items: Sequence[Any], *, raw: bool = False, tenant_id: int = DEFAULT_TENANT_ID
    ) -> list[models.PublishedEvent]:
        """All or nothing: every item is checked first, and if any is invalid an InvalidBatchError
        lists them all (by index) and nothing is stored; else all go into one transaction."""
        checked, invalid = self._check_all(items, raw=raw, tenant_id=tenant_id)
        if invalid:
            raise InvalidBatchError(invalid, len(items))
        return await self._store([new for new in checked if new is not None])

    async def publish_valid(self, items: Sequence[Any], *, tenant_id: int = DEFAULT_TENANT_ID) -> BatchOutcome:
        """The valid items go in (one transaction); the invalid ones are reported, not stored."""
        checked, invalid = self._check_all(items, raw=True, tenant_id=tenant_id)
        valid = [new for new in checked if new is not None]
        published = iter(await self._store(valid) if valid else [])
        return BatchOutcome([None if new is None else next(published) for new in checked], invalid)
