"""What the service returns: pydantic models, so MCP tools expose them as structured output."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

DeliveryState = Literal["pending", "held", "succeeded", "failed"]


def to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class Webhook(BaseModel):
    id: int
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        None, description="Why the webhook is disabled (by a person, a 410 Gone, or auto-disable)."
    )
    disabled_at: datetime | None = None
    secret_hint: str = Field(description="Last characters of the signing secret; get_webhook_secret shows it whole.")
    secret_rotation_ends_at: datetime | None = Field(
        None,
        description="Set during a secret rotation's grace period: until then requests are also signed with "
        "the previous secret.",
    )
    created_at: datetime
    updated_at: datetime
    consecutive_failures: int = Field(description="Failed real deliveries since the last success.")
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None


class WebhookList(BaseModel):
    webhooks: list[Webhook]
    total: int


class DeletedWebhook(BaseModel):
    id: int
    deleted: bool
    url: str
    removed_deliveries: int
    removed_attempts: int


class EventTypeInfo(BaseModel):
    name: str
    group: str
    description: str


class EventTypeList(BaseModel):
    event_types: list[EventTypeInfo]
    total: int


class SamplePayload(BaseModel):
    event: str
    description: str
    body: dict[str, Any] = Field(description="The exact JSON body a receiver gets: id, type, timestamp, data.")
    headers: dict[str, str] = Field(description="The headers that come with it (signature made with a sample secret).")
    data_schema: dict[str, Any] | None = Field(None, description="JSON Schema of the `data` object.")


class WebhookSecret(BaseModel):
    id: int
    secret: str
    previous_secret_expires_at: datetime | None = Field(
        None,
        description="Set after rotate_webhook_secret, during the grace period: until then requests also carry "
        "a signature made with the previous secret. Null: only this secret signs.",
    )
    how_to_verify: str


class RotatedSecret(BaseModel):
    id: int
    secret: str = Field(description="The new signing secret (whsec_...): give it to the receiver.")
    previous_secret_expires_at: datetime | None = Field(
        description="Until then requests carry signatures with both the new and the previous secret; "
        "null when grace_hours was 0 (only the new secret signs from now on)."
    )
    grace_hours: float
    dropped_older_secret: bool = Field(
        description="True when an earlier rotation's previous secret was still signing and no longer does."
    )
    next_steps: str = Field(description="What to do on the receiver's side, in words.")


class TestResult(BaseModel):
    webhook_id: int
    url: str
    event: str
    event_id: str
    attempt_id: int
    success: bool
    status_code: int | None
    response_ms: float
    error: str | None = Field(None, description="Why it failed, in words; null on success.")
    response_excerpt: str
    webhook_enabled: bool


class Attempt(BaseModel):
    attempt_id: int
    timestamp: datetime
    event_type: str
    event_id: str
    delivery_id: int | None = Field(None, description="The delivery this attempt belongs to; null for tests.")
    attempt_number: int
    status_code: int | None
    response_ms: float
    success: bool
    error: str | None
    response_excerpt: str
    is_test: bool


class AttemptPage(BaseModel):
    webhook_id: int
    attempts: list[Attempt]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get older entries; null at the end.")


class WebhookStats(BaseModel):
    webhook_id: int
    window_hours: float | None = Field(
        None, description="Null means all time; a window starts at the top of its first hour."
    )
    total_attempts: int
    succeeded: int
    failed: int
    test_attempts: int
    success_rate: float | None = Field(None, description="Percent of attempts that succeeded; null with none.")
    avg_response_ms: float | None
    p95_response_ms: float | None = Field(
        description="Exact up to 10,000 attempts in the window; beyond that the upper bound of its latency bucket."
    )
    last_success_at: datetime | None
    last_failure_at: datetime | None
    consecutive_failures: int = Field(
        description="Attempts since the last success (tests included), counted up to 10,000."
    )
    pending_deliveries: int
    held_deliveries: int = Field(description="Waiting because the webhook is disabled.")
    failed_deliveries: int = Field(description="Dead: every attempt failed; retry_delivery or replay_failed revive.")
    succeeded_deliveries: int
    next_retry_at: datetime | None


class PublishedEvent(BaseModel):
    event_id: str
    type: str
    queued: int = Field(description="Webhooks the event was queued for.")
    duplicate: bool = Field(False, description="True when the idempotency key matched an earlier event.")
    warnings: list[str] = Field(
        default_factory=list,
        description="What the type's schema did not accept, when validation only warns (recorded on the event).",
    )


class Delivery(BaseModel):
    id: int
    webhook_id: int
    event_id: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None


class ReplayResult(BaseModel):
    webhook_id: int
    requeued: int
    held: bool = Field(description="True when the webhook is disabled: requeued deliveries wait for enable.")
