"""What happens to a delivery after an attempt: done, retried later, dead, or held."""

from __future__ import annotations

import random
from dataclasses import dataclass

from webhook_mcp.core.settings import Settings
from webhook_mcp.storage.records import Outcome


@dataclass(frozen=True, slots=True)
class Decision:
    state: str
    next_attempt_at: float | None
    disable_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``schedule[n]`` is the wait before attempt n+1 (the first is normally 0: send at once)."""

    schedule: tuple[float, ...]
    jitter: float = 0.1
    max_retry_after: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.retry_schedule, settings.retry_jitter, settings.max_retry_after)

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)

    def delay_before(self, attempt_number: int, rng: random.Random | None = None) -> float:
        base = self.schedule[attempt_number - 1]
        if not self.jitter or not base:
            return base
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def decide(self, outcome: Outcome, attempt_number: int, now: float, url: str = "") -> Decision:
        if outcome.success:
            return Decision("succeeded", None)
        if outcome.status_code == 410:
            reason = f"disabled: the endpoint {url} answered 410 Gone; update the URL or re-enable with toggle_webhook"
            return Decision("held", now, reason)
        if attempt_number >= self.max_attempts:
            return Decision("failed", None)
        if outcome.retry_after is not None and outcome.status_code in (429, 503):
            delay = min(max(outcome.retry_after, 0.0), self.max_retry_after)
        else:
            delay = self.delay_before(attempt_number + 1)
        return Decision("pending", now + delay)
