"""What the store takes and gives back: plain records shared by the service, the dispatcher and
the store, so neither of them depends on the other's internals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from webhook_mcp.core.tenancy import DEFAULT_TENANT_ID


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    type: str
    body: str
    idempotency_key: str | None = None
    problems: str | None = None
    tenant_id: int = DEFAULT_TENANT_ID  # it reaches this tenant's webhooks only


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    type: str
    queued: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    attempt_number: int
    url: str
    secret: str
    body: bytes
    # Stored values (maybe encrypted: the dispatcher opens them); the previous secret also signs
    # until it expires, during a rotation's grace period.
    previous_secret: str | None = None
    previous_secret_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    disabled: list[int]  # webhooks this batch disabled
    stopped: frozenset[int]  # webhooks of the batch that are disabled or deleted now


class Outcome(Protocol):
    """What the sender reports about one attempt (``sender.SendOutcome``)."""

    @property
    def success(self) -> bool: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def response_ms(self) -> float: ...
    @property
    def error(self) -> str | None: ...
    @property
    def response_excerpt(self) -> str: ...
    @property
    def retry_after(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt and what the retry policy decided about its delivery."""

    delivery_id: int | None
    webhook_id: int
    event_id: str
    event_type: str
    attempt_number: int
    is_test: bool
    created_at: float
    status_code: int | None
    response_ms: float
    success: bool
    error: str | None
    response_excerpt: str
    next_state: str = "succeeded"
    next_attempt_at: float | None = None
    disable_reason: str | None = None

    @classmethod
    def of(
        cls,
        outcome: Outcome,
        *,
        delivery_id: int | None,
        webhook_id: int,
        event_id: str,
        event_type: str,
        attempt_number: int,
        created_at: float,
        next_state: str = "succeeded",
        next_attempt_at: float | None = None,
        disable_reason: str | None = None,
    ) -> AttemptRecord:
        return cls(
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type,
            attempt_number=attempt_number,
            is_test=delivery_id is None,
            created_at=created_at,
            status_code=outcome.status_code,
            response_ms=outcome.response_ms,
            success=outcome.success,
            error=outcome.error,
            response_excerpt=outcome.response_excerpt,
            next_state=next_state,
            next_attempt_at=next_attempt_at,
            disable_reason=disable_reason,
        )


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    auto_disable_after: float
    min_failures: int
