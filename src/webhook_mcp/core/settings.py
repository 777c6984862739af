"""Configuration read from the environment (prefix ``WEBHOOK_MCP_``)."""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_config_dir, user_data_dir
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webhook_mcp.core.errors import InvalidArgumentError
from webhook_mcp.core.tenancy import check_tenant_name

DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_AUTHORITY = r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?:[0-9]{1,5}|\*))?"
_HOST_HEADER = re.compile(rf"^{_AUTHORITY}$")
_ORIGIN = re.compile(rf"^https?://{_AUTHORITY}$")


def default_database_url() -> str:
    """An SQLite file in the user's data directory, so the server works from any working directory."""
    path = Path(user_data_dir("webhook-mcp", appauthor=False)) / "webhook-mcp.db"
    return f"sqlite:///{path}"


def default_secret_key_file() -> Path:
    """In the user's config directory: apart from the database (and its backups), owner-only."""
    return Path(user_config_dir("webhook-mcp", appauthor=False)) / "secret.key"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_matching(value: object, pattern: re.Pattern[str], problem: str) -> object:
    """A comma-separated list whose every item must match ``pattern``."""
    value = _split_csv(value)
    if isinstance(value, list):
        for item in value:
            if not pattern.match(str(item)):
                raise ValueError(f"{item!r} {problem}")
    return value


class Settings(BaseSettings):
    """Every knob of the service; each field is also documented in the README and ``--help``."""

    model_config = SettingsConfigDict(env_prefix="WEBHOOK_MCP_", extra="ignore", frozen=True, allow_inf_nan=False)

    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL: sqlite:///path.db (default: a file in the user data dir) "
        "or postgresql://user@host/db.",
    )
    allowed_private_networks: Annotated[list[Network], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs that deliveries may reach although loopback/private/link-local "
        "(e.g. 127.0.0.0/8 for local testing). Empty: only public addresses.",
    )
    delivery_timeout: float = Field(10.0, gt=0, le=300, description="Seconds one delivery attempt may take.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Logging level (logs go to stderr)."
    )
    event_types_file: Path | None = Field(
        None, description="JSON or YAML file with extra event types operators add to the catalog."
    )
    api_token: str | None = Field(
        None,
        description="Bearer token every HTTP route requires (MCP endpoints and POST /v1/events); needed to bind "
        "an address other than loopback. Without it POST /v1/events is off.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated extra Host header values the HTTP transports accept (DNS-rebinding "
        "protection), e.g. mcp.example.com,mcp.example.com:8443 (name:* for any port). The bind address:port "
        "(for loopback also 127.0.0.1, localhost, [::1]) is always accepted.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated extra browser Origins the HTTP transports accept, e.g. "
        "https://app.example.com (scheme://host:* for any port). The bind address's own origin (for loopback, "
        "any local origin) is always accepted; requests without an Origin header are not affected.",
    )
    http_header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds an HTTP client has to send a request's line and headers (at most 64 KiB and "
        "100 fields); a connection still sending them is answered 408 and closed.",
    )
    read_only: bool = Field(
        False,
        description="Register only tools that change nothing (and not get_webhook_secret); POST /v1/events is "
        "off too. For assistants that should look, not change.",
    )
    max_concurrency: int = Field(
        128,
        ge=1,
        le=10_000,
        description="Deliveries in flight at once, per process (as many more may be queued behind endpoints "
        "at their limit).",
    )
    per_endpoint_concurrency: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Deliveries in flight at once to one webhook, across all workers (counted in the database).",
    )
    poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between polls for due deliveries when nothing wakes the dispatcher."
    )
    batch_size: int = Field(200, ge=1, le=5_000, description="Deliveries claimed, and results written, per batch.")
    lease_seconds: float = Field(
        60.0, gt=0, description="How long a claimed delivery stays reserved before another worker may take it."
    )
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        DEFAULT_RETRY_SCHEDULE,
        description="Comma-separated delays in seconds before each attempt; its length is the attempt limit.",
    )
    retry_jitter: float = Field(0.1, ge=0, le=1, description="Random spread applied to each retry delay (0.1 = ±10%).")
    max_retry_after: float = Field(
        3600.0, ge=0, description="Upper bound in seconds on a receiver's Retry-After header (429/503)."
    )
    auto_disable_after: float = Field(
        5 * 86400.0, gt=0, description="Seconds of nothing but failures after which a webhook is disabled."
    )
    auto_disable_min_failures: int = Field(
        10, ge=1, description="Failures needed (as well as the period) before auto-disable."
    )
    log_retention_days: float = Field(30.0, gt=0, description="Attempt logs older than this are pruned.")
    delivery_retention_days: float = Field(
        30.0,
        ge=0,
        description="Events whose deliveries have all finished, and their succeeded deliveries, are pruned this "
        "many days after finishing (0 keeps them for good). Hourly statistics are kept.",
    )
    dead_delivery_retention_days: float = Field(
        90.0,
        ge=0,
        description="Dead (failed) deliveries stay this many days after their last attempt, so they can still "
        "be retried or replayed, then are pruned (0 keeps them for good).",
    )
    shutdown_grace: float = Field(
        10.0,
        ge=0,
        le=600,
        description="Seconds a stopping process lets deliveries in flight finish (SIGTERM/SIGINT); what was "
        "claimed but not started is handed back at once. A second signal exits at once.",
    )
    worker_http_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port on which `webhook-mcp worker` serves /healthz, /readyz and /metrics (off when unset; "
        "also --http-port).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text (one readable line per record) or json (one JSON object per line)."
    )
    idempotency_ttl: float = Field(86400.0, gt=0, description="Seconds an idempotency key is remembered.")
    max_payload_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest event body accepted (serialized envelope, bytes)."
    )
    event_validation: Literal["reject", "warn", "off"] = Field(
        "reject",
        description="What a payload its type's schema does not accept gets: reject (refused with the problems "
        "listed), warn (accepted; the problems are logged and recorded on the event) or off (schemas only "
        "describe). Built-in schemas require nothing but an id, so reject only enforces schemas you wrote.",
    )
    max_batch_events: int = Field(
        1000, ge=1, le=100_000, description="Most events one batch may carry (POST /v1/events, publish_many)."
    )
    max_batch_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest POST /v1/events request body for a batch, in bytes."
    )
    database_pool_size: int = Field(
        8,
        ge=1,
        le=200,
        description="PostgreSQL connections (and database threads) per process; the dispatcher keeps up to "
        "two more for its claims and results, and one more listens for new work.",
    )
    run_dispatcher: bool = Field(
        True,
        description="Run the delivery dispatcher inside `serve` (set false when separate workers deliver).",
    )
    inbox_limit: int = Field(
        20,
        ge=1,
        le=1_000,
        description="Temporary inboxes (open_inbox) kept open at once per process and tenant; opening one more "
        "closes that tenant's oldest.",
    )
    inbox_ttl: float = Field(
        3600.0, gt=0, le=7 * 86400, description="Seconds an inbox lives; after that its URL answers 404."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key that encrypts webhook signing secrets in the database (every process needs "
        "the same one; 'NEW,OLD' re-encrypts with NEW on start-up). Generate one: python -c \"from "
        'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
    )

    secret_key_file: Path = Field(
        default_factory=default_secret_key_file,
        description="Where the Fernet key is kept when WEBHOOK_MCP_SECRET_KEY is not set and the database is "
        f"SQLite: created once (owner-only, mode 0600) if missing. Default: {default_secret_key_file()}",
    )
    allow_plaintext_secrets: bool = Field(
        False,
        description="Without WEBHOOK_MCP_SECRET_KEY, store signing secrets unencrypted instead (no key file on "
        "SQLite; on PostgreSQL, start instead of refusing). Warned about at every start.",
    )

    tenant: str | None = Field(
        None,
        description="The tenant (shop) `serve` acts for, by name: its tools, resources and events published "
        "through it are that tenant's only (also `serve --tenant NAME`). Unset: every tenant's (one shop: the "
        "default tenant).",
    )

    @field_validator("tenant", mode="before")
    @classmethod
    def _check_tenant(cls, value: object) -> object:
        if value == "":
            return None
        if value is not None:
            try:
                check_tenant_name(value)
            except InvalidArgumentError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("allowed_private_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            networks = []
            for item in value:
                try:
                    networks.append(ipaddress.ip_network(str(item), strict=False))
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not a CIDR network such as 127.0.0.0/8 ({exc})") from exc
            return networks
        return value

    @field_validator("api_token", mode="before")
    @classmethod
    def _check_token(cls, value: object) -> object:
        if isinstance(value, str):
            if not value:
                return None
            if not all(33 <= ord(char) <= 126 for char in value):
                raise ValueError(
                    "the token must be printable ASCII without spaces (it travels in an HTTP header); "
                    "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _parse_hosts(cls, value: object) -> object:
        return _split_matching(
            value,
            _HOST_HEADER,
            "is not a Host header value; give a name or address with an optional port, "
            "e.g. mcp.example.com, mcp.example.com:8443, 10.0.0.5:*, [2001:db8::1]:8000",
        )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return _split_matching(
            value,
            _ORIGIN,
            "is not an origin; give scheme://host[:port] with no path, "
            "e.g. https://app.example.com or http://localhost:*",
        )

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("retry_schedule needs at least one delay (use 0 for a single immediate attempt)")
        if any(not math.isfinite(delay) or delay < 0 for delay in value):
            raise ValueError("retry_schedule delays must be finite, zero or positive seconds")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.lease_seconds <= self.delivery_timeout:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be longer than delivery_timeout "
                f"({self.delivery_timeout:g}), or another worker retakes deliveries still in flight"
            )
        dead, finished = self.dead_delivery_retention_days, self.delivery_retention_days
        if finished and dead and dead < finished:
            raise ValueError(
                f"dead_delivery_retention_days ({dead:g}) must be at least delivery_retention_days "
                f"({finished:g}): dead deliveries are kept longer so they can still be replayed"
            )
        return self

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule)


def describe_settings() -> str:
    """One line per setting, for ``--help``."""
    lines = []
    for name, field in Settings.model_fields.items():
        lines.append(f"  WEBHOOK_MCP_{name.upper():<34} {field.description}")
    return "\n".join(lines)
