"""This process's Prometheus counters and histograms, and the few calls that feed them. Every
process (server or worker) exports its own; the queue's gauges are read from the database at
scrape time instead (``service.monitoring``)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import Counter, Histogram

PREFIX = "webhook_mcp"
# Attempt outcome classes, the values of the ``outcome`` label.
OUTCOMES = ("success", "timeout", "connection_error", "blocked_address", "http_4xx", "http_5xx", "other")
# Seconds; the same bounds as the hourly statistics' response-time histogram, in seconds.
ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DATABASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

EVENTS_PUBLISHED = Counter(
    f"{PREFIX}_events_published", "Events published (duplicates by idempotency key not counted).", ["type"]
)
DELIVERY_ATTEMPTS = Counter(
    f"{PREFIX}_delivery_attempts", "Delivery attempts whose result was written, by outcome class.", ["outcome"]
)
ATTEMPT_DURATION = Histogram(
    f"{PREFIX}_delivery_attempt_duration_seconds", "Time one delivery attempt took.", buckets=ATTEMPT_BUCKETS
)
RETRIES_SCHEDULED = Counter(f"{PREFIX}_retries_scheduled", "Failed attempts after which a retry was scheduled.")
DELIVERIES_DEAD = Counter(f"{PREFIX}_deliveries_dead", "Deliveries that used up their attempts (dead).")
CLAIM_DURATION = Histogram(
    f"{PREFIX}_claim_duration_seconds", "Time one claim of due deliveries took.", buckets=DATABASE_BUCKETS
)
DELIVERIES_CLAIMED = Counter(f"{PREFIX}_deliveries_claimed", "Deliveries this process claimed.")
RESULT_WRITE_DURATION = Histogram(
    f"{PREFIX}_result_write_duration_seconds", "Time writing one batch of results took.", buckets=DATABASE_BUCKETS
)
DELIVERIES_HANDED_BACK = Counter(
    f"{PREFIX}_deliveries_handed_back", "Claimed deliveries handed back unsent (stopping, webhook changed)."
)
PRUNED_ROWS = Counter(f"{PREFIX}_pruned_rows", "Rows removed by retention.", ["table"])

for _outcome in OUTCOMES:  # every class is exported from the start, at zero
    DELIVERY_ATTEMPTS.labels(_outcome)


class Result(Protocol):
    """What is counted of one attempt (``storage.store.AttemptRecord``)."""

    @property
    def success(self) -> bool: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def response_ms(self) -> float: ...
    @property
    def next_state(self) -> str: ...


def outcome_class(success: bool, status_code: int | None, error: str | None) -> str:
    """The class of an attempt, from what the sender reported (its failure texts start with
    ``blocked:`` or ``timed out`` for those two cases)."""
    if success:
        return "success"
    if status_code is not None:
        if 400 <= status_code < 500:
            return "http_4xx"
        return "http_5xx" if status_code >= 500 else "other"
    text = error or ""
    if text.startswith("blocked:"):
        return "blocked_address"
    if text.startswith("timed out"):
        return "timeout"
    return "other" if text.startswith(("not sent", "invalid webhook URL", "unsupported URL")) else "connection_error"


def results_written(results: Iterable[Result], seconds: float) -> None:
    """A batch of attempt results was written in ``seconds``."""
    RESULT_WRITE_DURATION.observe(seconds)
    outcomes: Tally[str] = Tally()
    retries = dead = 0
    for result in results:
        outcomes[outcome_class(result.success, result.status_code, result.error)] += 1
        ATTEMPT_DURATION.observe(result.response_ms / 1000)
        if not result.success:
            retries += result.next_state == "pending"
            dead += result.next_state == "failed"
    for outcome, count in outcomes.items():
        DELIVERY_ATTEMPTS.labels(outcome).inc(count)
    if retries:
        RETRIES_SCHEDULED.inc(retries)
    if dead:
        DELIVERIES_DEAD.inc(dead)


def claimed(count: int, seconds: float) -> None:
    CLAIM_DURATION.observe(seconds)
    if count:
        DELIVERIES_CLAIMED.inc(count)


def published(types: Iterable[str]) -> None:
    for event_type, count in Tally(types).items():
        EVENTS_PUBLISHED.labels(event_type).inc(count)


def handed_back(count: int) -> None:
    DELIVERIES_HANDED_BACK.inc(count)


def pruned(table: str, count: int) -> None:
    if count:
        PRUNED_ROWS.labels(table).inc(count)
