"""Tenants: one deployment serves many shops, each seeing only its own webhooks, deliveries,
logs and statistics. A deployment that never names a tenant has one, ``default``, which owns
everything, so a single shop sees nothing of tenancy at all."""

from __future__ import annotations

import re

from webhook_mcp.core.errors import InvalidArgumentError

DEFAULT_TENANT_ID = 1
DEFAULT_TENANT_NAME = "default"
MAX_TENANT_NAME_LENGTH = 63

# Names go in URLs, headers and command lines unquoted: lower-case letters, digits, - and _,
# starting with a letter, so a name is never mistaken for a numeric id.
_TENANT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def check_tenant_name(name: object) -> str:
    """The name if it is a valid tenant name, else an error that says what one looks like."""
    if not isinstance(name, str) or _TENANT_NAME.fullmatch(name) is None:
        shown = repr(name) if not isinstance(name, str) else repr(name[:80])
        raise InvalidArgumentError(
            f"tenant name {shown} is not valid; use 1-{MAX_TENANT_NAME_LENGTH} lower-case letters, digits, "
            "'-' or '_', starting with a letter (e.g. 'acme-shop')"
        )
    return name
