"""Unit tests of the retry policy (what happens to a delivery after an attempt) and of the retry
schedule setting. No I/O."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from webhook_mcp.core.settings import DEFAULT_RETRY_SCHEDULE, Settings
from webhook_mcp.delivery.retries import Decision, RetryPolicy
from webhook_mcp.delivery.sender import SendOutcome

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
URL = "https://hooks.example.com/webhook"
SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def outcome(status: int | None, retry_after: float | None = None) -> SendOutcome:
    success = status is not None and 200 <= status < 300
    return SendOutcome(
        success=success,
        status_code=status,
        response_ms=12.0,
        error=None if success else ("connection refused" if status is None else f"HTTP {status}"),
        response_excerpt="",
        retry_after=retry_after,
    )


def policy(**overrides: object) -> RetryPolicy:
    values: dict[str, object] = {"schedule": SCHEDULE, "jitter": 0.0, "max_retry_after": 3600.0}
    values.update(overrides)
    return RetryPolicy(**values)  # type: ignore[arg-type]


# --- RetryPolicy.decide ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_success_is_succeeded(status: int) -> None:
    assert policy().decide(outcome(status), 1, NOW, URL) == Decision("succeeded", None)


def test_success_on_last_attempt_is_still_succeeded() -> None:
    assert policy().decide(outcome(200), len(SCHEDULE), NOW, URL).state == "succeeded"


def test_500_on_first_attempt_is_retried_after_schedule_1() -> None:
    decision = policy().decide(outcome(500), 1, NOW, URL)
    assert decision == Decision("pending", NOW + SCHEDULE[1])
    assert decision.disable_reason is None


@pytest.mark.parametrize("attempt", range(1, len(SCHEDULE)))
def test_each_retry_waits_the_next_scheduled_delay(attempt: int) -> None:
    decision = policy().decide(outcome(503), attempt, NOW, URL)
    assert decision.state == "pending"
    assert decision.next_attempt_at == pytest.approx(NOW + SCHEDULE[attempt])


def test_network_error_is_retried() -> None:
    decision = policy().decide(outcome(None), 2, NOW, URL)
    assert decision == Decision("pending", NOW + SCHEDULE[2])


@pytest.mark.parametrize("status", [500, 404, 301, None])
def test_last_attempt_fails_the_delivery(status: int | None) -> None:
    p = policy()
    assert p.max_attempts == 8
    decision = p.decide(outcome(status), p.max_attempts, NOW, URL)
    assert decision == Decision("failed", None)


def test_three_attempt_schedule() -> None:
    p = policy(schedule=(0.0, 0.05, 0.05))
    assert p.max_attempts == 3
    assert p.decide(outcome(500), 1, NOW, URL) == Decision("pending", NOW + 0.05)
    assert p.decide(outcome(500), 2, NOW, URL) == Decision("pending", NOW + 0.05)
    assert p.decide(outcome(500), 3, NOW, URL) == Decision("failed", None)


def test_single_attempt_schedule_fails_at_once() -> None:
    assert policy(schedule=(0.0,)).decide(outcome(500), 1, NOW, URL).state == "failed"


def test_jitter_stays_within_bounds_and_varies() -> None:
    p = policy(jitter=0.1)
    rng = random.Random(1234)
    base = SCHEDULE[2]
    delays = [p.delay_before(3, rng) for _ in range(2000)]
    assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
    assert len(set(delays)) > 1000, "jitter must actually spread the retries"
    assert min(delays) < base * 0.95 and max(delays) > base * 1.05, "the spread must use most of ±10%"


def test_jitter_applies_to_decide() -> None:
    p = policy(jitter=0.5)
    for _ in range(200):
        decision = p.decide(outcome(500), 1, NOW, URL)
        assert decision.state == "pending"
        assert decision.next_attempt_at is not None
        assert NOW + 2.5 <= decision.next_attempt_at <= NOW + 7.5


def test_jitter_never_delays_a_zero_delay() -> None:
    p = policy(schedule=(0.0, 0.0, 10.0), jitter=1.0)
    assert all(p.delay_before(2) == 0.0 for _ in range(100))
    assert all(p.delay_before(3) >= 0.0 for _ in range(500))


def test_zero_jitter_is_exact() -> None:
    p = policy(jitter=0.0)
    assert {p.delay_before(2) for _ in range(50)} == {SCHEDULE[1]}


@pytest.mark.parametrize("attempt", [1, 4, 8])
def test_410_gone_holds_and_disables(attempt: int) -> None:
    decision = policy().decide(outcome(410), attempt, NOW, URL)
    assert decision.state == "held"
    assert decision.disable_reason is not None
    assert "410" in decision.disable_reason
    assert URL in decision.disable_reason


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_overrides_the_schedule(status: int) -> None:
    decision = policy().decide(outcome(status, retry_after=42.0), 1, NOW, URL)
    assert decision == Decision("pending", NOW + 42.0)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_capped(status: int) -> None:
    decision = policy(max_retry_after=600.0).decide(outcome(status, retry_after=86400.0), 1, NOW, URL)
    assert decision == Decision("pending", NOW + 600.0)


def test_retry_after_zero_retries_at_once() -> None:
    assert policy().decide(outcome(429, retry_after=0.0), 1, NOW, URL) == Decision("pending", NOW)


def test_429_without_retry_after_uses_schedule() -> None:
    assert policy().decide(outcome(429), 1, NOW, URL) == Decision("pending", NOW + SCHEDULE[1])
    assert policy().decide(outcome(429), 3, NOW, URL) == Decision("pending", NOW + SCHEDULE[3])


def test_retry_after_ignored_for_other_statuses() -> None:
    # Only 429 and 503 define Retry-After semantics for a retry; a 500 keeps the schedule.
    assert policy().decide(outcome(500, retry_after=42.0), 1, NOW, URL) == Decision("pending", NOW + SCHEDULE[1])


def test_retry_after_does_not_extend_the_attempt_budget() -> None:
    p = policy(schedule=(0.0, 1.0))
    assert p.decide(outcome(429, retry_after=5.0), 2, NOW, URL) == Decision("failed", None)


def test_from_settings() -> None:
    settings = Settings(
        database_url="sqlite:///unused.db", retry_schedule=(0, 1, 2), retry_jitter=0.25, max_retry_after=99
    )
    p = RetryPolicy.from_settings(settings)
    assert p == RetryPolicy((0.0, 1.0, 2.0), 0.25, 99.0)
    assert p.max_attempts == settings.max_attempts == 3


# --- the retry schedule setting ---------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("WEBHOOK_MCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WEBHOOK_MCP_DATABASE_URL", "sqlite:///unused.db")
    return monkeypatch


def test_default_schedule(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.retry_schedule == (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert settings.retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert settings.max_attempts == 8
    assert settings.retry_jitter == 0.1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0,5,300", (0.0, 5.0, 300.0)),
        (" 0 , 5 ,300 ", (0.0, 5.0, 300.0)),
        ("0,0.05,0.05", (0.0, 0.05, 0.05)),
        ("0", (0.0,)),
        ("0,5,", (0.0, 5.0)),
    ],
)
def test_schedule_from_env(clean_env: pytest.MonkeyPatch, raw: str, expected: tuple[float, ...]) -> None:
    clean_env.setenv("WEBHOOK_MCP_RETRY_SCHEDULE", raw)
    settings = Settings()
    assert settings.retry_schedule == expected
    assert settings.max_attempts == len(expected)


@pytest.mark.parametrize("raw", ["", " ", ",", " , "])
def test_empty_schedule_rejected(clean_env: pytest.MonkeyPatch, raw: str) -> None:
    clean_env.setenv("WEBHOOK_MCP_RETRY_SCHEDULE", raw)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "retry_schedule needs at least one delay" in str(info.value)


@pytest.mark.parametrize("raw", ["0,-1", "-5", "0,5,-0.1"])
def test_negative_delay_rejected(clean_env: pytest.MonkeyPatch, raw: str) -> None:
    clean_env.setenv("WEBHOOK_MCP_RETRY_SCHEDULE", raw)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "retry_schedule delays must be finite, zero or positive seconds" in str(info.value)


def test_non_numeric_delay_rejected(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WEBHOOK_MCP_RETRY_SCHEDULE", "0,five")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "retry_schedule" in str(info.value)


def test_empty_schedule_rejected_in_code() -> None:
    with pytest.raises(ValidationError, match="at least one delay"):
        Settings(database_url="sqlite:///unused.db", retry_schedule=())


@pytest.mark.parametrize("raw", ["0,nan", "0,inf"])
def test_non_finite_delay_rejected(clean_env: pytest.MonkeyPatch, raw: str) -> None:
    clean_env.setenv("WEBHOOK_MCP_RETRY_SCHEDULE", raw)
    with pytest.raises(ValidationError):
        Settings()
