"""The SSRF guard: which addresses deliveries may reach, every spelling of an IP address a URL can
hide, and a resolver that drops the addresses it refuses. The sender checks each connection with it;
``create_webhook``/``update_webhook`` check URLs with :func:`check_destination`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = [
    "ALLOW_SETTING",
    "RESOLVE_TIMEOUT",
    "Address",
    "GuardedResolver",
    "Network",
    "Refusal",
    "ResolverBlocked",
    "blocked_reason",
    "check_destination",
    "literal_address",
    "literal_check",
    "url_host",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING = "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"

# Bound on the lookup create_webhook/update_webhook make; a name that does not answer in time passes.
RESOLVE_TIMEOUT = 2.0

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class ResolverBlocked(OSError):
    """Raised by :class:`GuardedResolver`; an OSError, as resolvers raise, so callers that catch
    lookup failures see it (the transport turns it into :class:`BlockedAddressError`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def blocked_reason(address: Address, allowed_networks: Sequence[Network]) -> str | None:
    """Why deliveries may not go to ``address`` (e.g. ``"private address"``), or None if they may.

    The allow-list is matched against ``address`` itself, the one the connection will use: an
    IPv4-mapped, 6to4 or NAT64 address is opened only by a listed IPv6 range that holds it, never by
    the IPv4 address it carries. Refused, it is judged (and named) by that IPv4 address."""
    if any(address in net for net in allowed_networks):
        return None
    embedded: Address | None = None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    target = embedded if embedded is not None else address
    if target.is_unspecified:
        return "unspecified address"
    if target.is_loopback:
        return "loopback address"
    if target.is_link_local:
        return "link-local (cloud metadata) address"
    if target.is_multicast:
        return "multicast address"
    if isinstance(target, ipaddress.IPv4Address) and target in _CGNAT:
        return "shared/CGNAT address"
    if target.is_reserved or (isinstance(target, ipaddress.IPv4Address) and target in _THIS_NETWORK):
        return "reserved address"
    if target.is_private or (isinstance(target, ipaddress.IPv6Address) and target.is_site_local):
        return "private address"
    if not target.is_global:
        return "non-public address"
    return None


def _a(reason: str) -> str:
    return ("an " if reason[0] in "aeiou" else "a ") + reason


def _shown(address: Address) -> str:
    """The address as people write it (IPv4-mapped ones with their dotted quad, as Python 3.13 does)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _literal_message(host: str, address: Address, reason: str) -> str:
    what = _a(reason) if _is_plain_literal(host) else f"{_shown(address)}, {_a(reason)}"
    return f"blocked: {host} is {what}; allow it with {ALLOW_SETTING}"


def _name_message(host: str, address: Address, reason: str) -> str:
    return f"blocked: {host} resolves to {_shown(address)}, {_a(reason)}; allow it with {ALLOW_SETTING}"


def _is_plain_literal(host: str) -> bool:
    """Whether ``host`` is an address in its usual spelling (dotted quad, or any valid IPv6 form)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_HEX = re.compile(r"0x[0-9a-f]*")
_OCTAL = re.compile(r"0[0-7]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_ENDS_IN_NUMBER = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)")


def _ipv4_number(part: str) -> int | None:
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCTAL.fullmatch(part):
        return int(part, 8)
    if _DECIMAL.fullmatch(part):
        return int(part)
    return None


def literal_address(host: str) -> Address | None:
    """The IP address ``host`` denotes when written as one, else None (a name to resolve).

    Accepts every spelling a URL parser or ``getaddrinfo`` (``inet_aton``) turns into an address,
    so none of them can slip past the guard as a "name": ``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
    ``127.1``, a trailing dot, brackets and IPv6 zones. Raises ValueError for a host that looks
    numeric (its last label is a number, as the WHATWG URL standard puts it) but is no address.
    """
    text = host.lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"the host {host!r} is not a valid IPv6 address") from None
    if text.endswith("."):
        text = text[:-1]
    labels = text.split(".")
    if not text.isascii() or not _ENDS_IN_NUMBER.fullmatch(labels[-1]):
        return None
    numbers = [_ipv4_number(label) for label in labels]
    if len(numbers) <= 4 and all(n is not None for n in numbers):
        *head, last = [n for n in numbers if n is not None]
        if all(n <= 255 for n in head) and last < 256 ** (4 - len(head)):
            value = last
            for index, number in enumerate(head):
                value |= number << (8 * (3 - index))
            return ipaddress.IPv4Address(value)
    raise ValueError(f"the host {host!r} looks like an IP address but is not a valid one; check the URL")


@dataclass(frozen=True, slots=True)
class Refusal:
    message: str
    blocked: bool  # the SSRF guard refused it (else: an unusable spelling)


def literal_check(host: str, allowed_networks: Sequence[Network]) -> tuple[Address | None, Refusal | None]:
    """The address an IP-literal host denotes and why it may not be used; (None, None) for a name."""
    try:
        address = literal_address(host)
    except ValueError as exc:
        return None, Refusal(str(exc), blocked=False)
    if address is None:
        return None, None
    reason = blocked_reason(address, allowed_networks)
    if reason is not None:
        return address, Refusal(_literal_message(host, address, reason), blocked=True)
    if not _is_plain_literal(host):
        return address, Refusal(
            f"the host {host!r} is a non-standard spelling of the IP address {address}; write it as {address}",
            blocked=False,
        )
    return address, None


def url_host(url: str) -> str | None:
    """The host as the sender will see it (httpx's parse), or failing that as ``urlsplit`` has it,
    IDNA-normalised so full-width digits and dots cannot disguise an address."""
    try:
        host = httpx.URL(url).host
    except Exception:
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            return None
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    return host.lower() or None


async def check_destination(
    url: str,
    allowed_networks: Sequence[Network],
    *,
    resolver: AbstractResolver | None = None,
    resolve_seconds: float = RESOLVE_TIMEOUT,
) -> str | None:
    """Why webhooks may never be delivered to ``url``, or None: its host is a blocked address,
    or a name resolving only to blocked addresses. A name that does not resolve (now) passes:
    the endpoint may exist later, and every delivery is checked again on the address it connects to.
    """
    host = url_host(url)
    if host is None:
        return None
    address, refusal = literal_check(host, allowed_networks)
    if refusal is not None:
        return refusal.message
    if address is not None:
        return None
    try:
        httpx.URL(url)
    except Exception as exc:
        return f"url {url!r} is not usable ({exc}); use e.g. https://example.com/webhooks"
    own = resolver is None
    active = DefaultResolver() if resolver is None else resolver
    try:
        async with asyncio.timeout(resolve_seconds):
            results = await active.resolve(host, 0, socket.AF_UNSPEC)
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        if own:
            await active.close()
    first_refusal: tuple[Address, str] | None = None
    for result in results:
        try:
            resolved = ipaddress.ip_address(result["host"])
        except ValueError:
            continue
        reason = blocked_reason(resolved, allowed_networks)
        if reason is None:
            return None
        if first_refusal is None:
            first_refusal = (resolved, reason)
    return None if first_refusal is None else _name_message(host, *first_refusal)


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver (or the one given) and drops the addresses
    :func:`blocked_reason` refuses.

    :class:`Http1Transport` connects only to what this returns, on every new connection, so checking
    here (not when the URL is saved) defeats DNS rebinding and names with both public and internal
    addresses.
    """

    def __init__(self, allowed_networks: Sequence[Network], resolver: AbstractResolver | None = None) -> None:
        self._allowed = tuple(allowed_networks)
        self._resolver = resolver if resolver is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        kept: list[ResolveResult] = []
        first_refusal: tuple[Address, str] | None = None
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"])
            except ValueError:
                continue
            reason = blocked_reason(address, self._allowed)
            if reason is None:
                kept.append(result)
            elif first_refusal is None:
                first_refusal = (address, reason)
        if kept:
            return kept
        if first_refusal is not None:
            raise ResolverBlocked(_name_message(host, *first_refusal))
        raise OSError(f"{host} resolved to no usable address")

    async def close(self) -> None:
        await self._resolver.close()
