"""The SSRF guard, proven form by form: every way of writing an internal address is refused when a
webhook is created or updated, and again when a delivery or test connects; DNS answers are checked on
the address actually connected to; the allow-list opens exactly what it names. Plus the other limits
on outbound requests: no redirects, capped response reads, bounded attempt time, capped event bodies.
Real receivers on 127.0.0.1 (and 127.0.0.2) observe what is and is not connected to."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from mcp import Client

from conftest import Receiver, make_settings, start_receiver, wait_until
from webhook_mcp import Hub, InvalidArgumentError
from webhook_mcp.core.signing import generate_secret
from webhook_mcp.delivery.guard import Network, blocked_reason, check_destination, literal_address
from webhook_mcp.delivery.sender import Http1Transport, Sender
from webhook_mcp.interfaces.mcp.server import create_server

pytestmark = pytest.mark.anyio

ALLOW = "WEBHOOK_MCP_ALLOWED_PRIVATE_NETWORKS"
BODY = b'{"type":"webhook.test"}'
PUBLIC_NAME = "hooks.example.com"
PUBLIC_IP = "93.184.215.14"  # never connected to: only its classification matters
ONLY_127_0_0_1: list[Network] = [ipaddress.ip_network("127.0.0.1/32")]
LOOPBACK: list[Network] = [ipaddress.ip_network("127.0.0.0/8")]

ReceiverFactory = Callable[..., Awaitable[Receiver]]


def blocked(what: str) -> str:
    """The refusal every layer reports, e.g. ``blocked("10.0.0.5 is a private address")``."""
    return f"blocked: {what}; allow it with {ALLOW}"


def refused(url: str, what: str) -> str:
    """A tool's refusal of a ``url`` argument: it names the argument, then the guard's reason."""
    return f"url {url} is refused: {blocked(what)}"


# Hosts (as written in a URL) that denote an address the guard refuses by default, and the refusal.
LITERAL_FORMS: list[tuple[str, str]] = [
    # loopback
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("127.255.255.254", "127.255.255.254 is a loopback address"),
    ("[::1]", "::1 is a loopback address"),
    # private: RFC 1918 and fc00::/7
    ("10.0.0.5", "10.0.0.5 is a private address"),
    ("172.16.0.1", "172.16.0.1 is a private address"),
    ("192.168.1.1", "192.168.1.1 is a private address"),
    ("[fc00::1]", "fc00::1 is a private address"),
    ("[fd12:3456::1]", "fd12:3456::1 is a private address"),
    # link-local, cloud metadata included
    ("169.254.169.254", "169.254.169.254 is a link-local (cloud metadata) address"),
    ("169.254.0.1", "169.254.0.1 is a link-local (cloud metadata) address"),
    ("[fe80::1]", "fe80::1 is a link-local (cloud metadata) address"),
    ("[fe80::1%25eth0]", "fe80::1%25eth0 is a link-local (cloud metadata) address"),
    ("[fd00:ec2::254]", "fd00:ec2::254 is a private address"),
    # CGNAT 100.64.0.0/10
    ("100.64.0.1", "100.64.0.1 is a shared/CGNAT address"),
    ("100.127.255.254", "100.127.255.254 is a shared/CGNAT address"),
    # unspecified
    ("0.0.0.0", "0.0.0.0 is an unspecified address"),
    ("[::]", ":: is an unspecified address"),
    # multicast
    ("224.0.0.1", "224.0.0.1 is a multicast address"),
    ("239.255.255.250", "239.255.255.250 is a multicast address"),
    ("[ff02::1]", "ff02::1 is a multicast address"),
    # reserved
    ("240.0.0.1", "240.0.0.1 is a reserved address"),
    ("255.255.255.255", "255.255.255.255 is a reserved address"),
    ("0.1.2.3", "0.1.2.3 is a reserved address"),
    # IPv4-mapped IPv6 of each class
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 is a loopback address"),
    ("[::ffff:7f00:1]", "::ffff:7f00:1 is a loopback address"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", "0:0:0:0:0:ffff:127.0.0.1 is a loopback address"),
    ("[::ffff:10.0.0.5]", "::ffff:10.0.0.5 is a private address"),
    ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254 is a link-local (cloud metadata) address"),
    ("[::ffff:100.64.0.1]", "::ffff:100.64.0.1 is a shared/CGNAT address"),
    ("[::ffff:0.0.0.0]", "::ffff:0.0.0.0 is an unspecified address"),
    ("[::ffff:224.0.0.1]", "::ffff:224.0.0.1 is a multicast address"),
    ("[::ffff:240.0.0.1]", "::ffff:240.0.0.1 is a reserved address"),
    # NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carrying internal IPv4 addresses
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1 is a loopback address"),
    ("[64:ff9b::a00:5]", "64:ff9b::a00:5 is a private address"),
    ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe is a link-local (cloud metadata) address"),
    ("[2002:7f00:1::1]", "2002:7f00:1::1 is a loopback address"),
    ("[2002:a9fe:a9fe::1]", "2002:a9fe:a9fe::1 is a link-local (cloud metadata) address"),
    ("[2002:c0a8:101::1]", "2002:c0a8:101::1 is a private address"),
    # numeric tricks getaddrinfo (inet_aton) and URL parsers turn into addresses
    ("2130706433", "2130706433 is 127.0.0.1, a loopback address"),
    ("0x7f.1", "0x7f.1 is 127.0.0.1, a loopback address"),
    ("0X7F.0.0.1", "0x7f.0.0.1 is 127.0.0.1, a loopback address"),
    ("0177.0.0.1", "0177.0.0.1 is 127.0.0.1, a loopback address"),
    ("127.1", "127.1 is 127.0.0.1, a loopback address"),
    ("127.0.1", "127.0.1 is 127.0.0.1, a loopback address"),
    ("0x7f000001", "0x7f000001 is 127.0.0.1, a loopback address"),
    ("017700000001", "017700000001 is 127.0.0.1, a loopback address"),
    ("127.000.000.001", "127.000.000.001 is 127.0.0.1, a loopback address"),
    ("0", "0 is 0.0.0.0, an unspecified address"),
    ("167772165", "167772165 is 10.0.0.5, a private address"),
    ("0300.0250.1.1", "0300.0250.1.1 is 192.168.1.1, a private address"),
    ("2852039166", "2852039166 is 169.254.169.254, a link-local (cloud metadata) address"),
    ("0xa9fea9fe", "0xa9fea9fe is 169.254.169.254, a link-local (cloud metadata) address"),
    ("0xa9.0xfe.0xa9.0xfe", "0xa9.0xfe.0xa9.0xfe is 169.254.169.254, a link-local (cloud metadata) address"),
    # trailing dot, full-width digits and ideographic dots
    ("127.0.0.1.", "127.0.0.1. is 127.0.0.1, a loopback address"),
    ("169.254.169.254.", "169.254.169.254. is 169.254.169.254, a link-local (cloud metadata) address"),
    ("127。0。0。1", "127.0.0.1 is a loopback address"),
    ("１２７.0.0.1", "127.0.0.1 is a loopback address"),
]

# Spellings of 127.0.0.1 a receiver on 127.0.0.1 would get requests through, were they not refused.
LOOPBACK_SPELLINGS = [
    (host, what)
    for host, what in LITERAL_FORMS
    if what.endswith("loopback address") and host not in ("[::1]", "127.255.255.254")
]


# --- helpers --------------------------------------------------------------------------------------


class StubResolver(AbstractResolver):
    """DNS for tests: each name gives its answers in turn (the last repeats); unknown names do not
    resolve. Records every lookup, so tests can tell whether a name was looked up at all."""

    def __init__(self, answers: Mapping[str, Sequence[Sequence[str]]] | None = None, *, hang: bool = False) -> None:
        self.answers = {name: [list(answer) for answer in seq] for name, seq in (answers or {}).items()}
        self.hang = hang
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if self.hang:
            await anyio.Event().wait()
        answers = self.answers.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = answers[min(self.calls.count(host), len(answers)) - 1]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for address in answer
        ]

    async def close(self) -> None:
        pass


def guarded_transport(
    allowed: Sequence[Network], resolver: AbstractResolver | None = None, timeout: float = 2.0
) -> Http1Transport:
    """The production transport, with stub DNS and no DNS cache (so every connection resolves)."""
    return Http1Transport(allowed_networks=allowed, timeout=timeout, resolver=resolver, dns_cache_seconds=None)


@contextlib.asynccontextmanager
async def open_hub(
    sqlite_url: str,
    allowed: Sequence[Network] = (),
    resolver: AbstractResolver | None = None,
    *,
    dispatch: bool = False,
    **overrides: Any,
) -> AsyncIterator[Hub]:
    """A hub with the given allow-list; with ``resolver``, its sender looks names up there."""
    settings = make_settings(sqlite_url, allowed_private_networks=list(allowed), **overrides)
    transport = None
    if resolver is not None:
        transport = guarded_transport(settings.allowed_private_networks, resolver, settings.delivery_timeout)
    async with Hub.open(settings, dispatch=dispatch, transport=transport) as hub:
        yield hub


async def saved_webhook(hub: Hub, url: str) -> int:
    """A webhook row written directly, as one created before the operator narrowed the allow-list
    (create_webhook would refuse it now): what matters is that delivering to it is refused too."""
    now = time.time()
    row = await hub.store.insert_webhook(
        {
            "url": url,
            "events": ["order.created"],
            "description": "",
            "secret": generate_secret(),
            "enabled": True,
            "created_at": now,
            "updated_at": now,
        }
    )
    return int(row.id)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def url_for(host: str, port: int) -> str:
    return f"http://{host}:{port}/webhooks"


@dataclass
class Twin:
    """Receivers on 127.0.0.1 and 127.0.0.2 at the same port, so one URL's connection target shows."""

    port: int
    first: Receiver  # 127.0.0.1
    second: Receiver  # 127.0.0.2
    runners: list[web.AppRunner] = field(default_factory=list)


@pytest.fixture
async def twin() -> AsyncIterator[Twin]:
    first, runner = await start_receiver()
    port = runner.addresses[0][1]
    second = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", second.handle)
    runner2 = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner2.setup()
    await web.TCPSite(runner2, "127.0.0.2", port).start()
    second.url = url_for("127.0.0.2", port)
    try:
        yield Twin(port, first, second, [runner, runner2])
    finally:
        for receiver, started in ((first, runner), (second, runner2)):
            receiver.release.set()
            await started.cleanup()


# --- the address parser agrees with the system's -------------------------------------------------


def _spellings(address: str) -> list[str]:
    """Every inet_aton spelling of ``address``: 1 to 4 parts, each in decimal, octal or hex."""
    value = int(ipaddress.IPv4Address(address))
    shapes = {1: [32], 2: [8, 24], 3: [8, 8, 16], 4: [8, 8, 8, 8]}
    forms = []
    for bits in shapes.values():
        parts, shift = [], 32
        for width in bits:
            shift -= width
            parts.append((value >> shift) & ((1 << width) - 1))
        for bases in itertools.product(("d", "o", "x"), repeat=len(parts)):
            forms.append(
                ".".join(
                    f"{n}" if b == "d" else f"0{n:o}" if b == "o" else f"0x{n:x}"
                    for n, b in zip(parts, bases, strict=True)
                )
            )
    return forms


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "192.168.1.1", "100.64.0.1", "8.8.8.8"]
)
def test_every_inet_aton_spelling_is_read_as_the_system_reads_it(address: str) -> None:
    forms = _spellings(address)
    assert len(forms) == 3 + 9 + 27 + 81
    for form in forms:
        assert socket.inet_aton(form) == ipaddress.IPv4Address(address).packed, form
        assert literal_address(form) == ipaddress.IPv4Address(address), form
        assert literal_address(form + ".") == ipaddress.IPv4Address(address), form


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "0x7f000001"])
def test_numeric_tricks_really_reach_loopback_through_getaddrinfo(host: str) -> None:
    """Why the tricks matter: the system resolver (a default name lookup uses) maps them to 127.0.0.1."""
    infos = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
    assert {info[4][0] for info in infos} == {"127.0.0.1"}
    assert literal_address(host) == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize("host", ["hooks.example.com", "localhost", "0x7f.example", "1e100.net", "example.com."])
def test_names_are_not_addresses(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize("host", ["999.1.1.1", "1.2.3.4.5", "example.123", "256.256", "0x1.0x100.1.1", "08.0.0.1"])
def test_numeric_looking_hosts_that_are_no_address_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="looks like an IP address but is not a valid one"):
        literal_address(host)


# --- send time: every form, no connection ----------------------------------------------------------


@pytest.mark.parametrize(("host", "what"), LITERAL_FORMS)
async def test_literal_forms_are_refused_at_send_time_without_dns(host: str, what: str) -> None:
    resolver = StubResolver({})
    async with Sender(timeout=2.0, resolver=resolver) as sender:
        with anyio.fail_after(5):
            outcome = await sender.send(f"http://{host}/webhooks", {}, BODY)
    assert outcome.error == blocked(what)
    assert not outcome.success and outcome.status_code is None
    assert resolver.calls == []


@pytest.mark.parametrize(("host", "what"), LOOPBACK_SPELLINGS)
async def test_test_webhook_to_a_loopback_spelling_is_logged_as_blocked_and_never_connects(
    sqlite_url: str, receiver: Receiver, host: str, what: str
) -> None:
    port = port_of(receiver.url)
    async with open_hub(sqlite_url) as hub:
        webhook_id = await saved_webhook(hub, url_for(host, port))
        result = await hub.service.test_webhook(webhook_id)
        assert not result.success and result.status_code is None
        assert result.error == blocked(what)
        (entry,) = (await hub.service.get_logs(webhook_id)).attempts
        assert entry.error == blocked(what) and not entry.success
    assert receiver.requests == []


async def test_the_receiver_is_reachable_when_loopback_is_allowed(sqlite_url: str, receiver: Receiver) -> None:
    """The control for the test above: the same setup does reach the receiver once allowed (the
    IPv4-mapped form by its own IPv6 range)."""
    port = port_of(receiver.url)
    async with open_hub(sqlite_url, [*LOOPBACK, ipaddress.ip_network("::ffff:127.0.0.0/104")]) as hub:
        for host in ("127.0.0.1", "[::ffff:127.0.0.1]", "localhost"):
            webhook_id = await saved_webhook(hub, url_for(host, port))
            result = await hub.service.test_webhook(webhook_id)
            assert result.success, (host, result.error)
    assert len(receiver.requests) == 3


async def test_dispatched_deliveries_to_blocked_destinations_fail_with_the_reason(
    sqlite_url: str, receiver: Receiver
) -> None:
    port = port_of(receiver.url)
    resolver = StubResolver({"internal.example": [["127.0.0.1"]]})
    cases = {
        url_for("2130706433", port): blocked("2130706433 is 127.0.0.1, a loopback address"),
        url_for("[::ffff:127.0.0.1]", port): blocked("::ffff:127.0.0.1 is a loopback address"),
        url_for("internal.example", port): blocked("internal.example resolves to 127.0.0.1, a loopback address"),
        "http://169.254.169.254/latest/meta-data/": blocked("169.254.169.254 is a link-local (cloud metadata) address"),
    }
    async with open_hub(sqlite_url, resolver=resolver, dispatch=True, retry_schedule=(0.0,)) as hub:
        ids = {await saved_webhook(hub, url): expected for url, expected in cases.items()}
        await hub.publish("order.created", dict(hub.catalog.get("order.created").example))

        async def all_logged() -> bool:
            return all([(await hub.service.get_logs(i)).attempts for i in ids])

        await wait_until(all_logged)
        for webhook_id, expected in ids.items():
            (entry,) = (await hub.service.get_logs(webhook_id)).attempts
            assert entry.error == expected and not entry.success
            assert (await hub.service.get_stats(webhook_id)).failed_deliveries == 1
    assert receiver.requests == []


async def test_a_spelling_httpx_rejects_is_still_reported_as_blocked() -> None:
    async with Sender(timeout=1.0) as sender:
        outcome = await sender.send("http://0177.0.0.1/webhooks", {}, BODY)
        public = await sender.send("http://08.8.8.8/webhooks", {}, BODY)
    assert outcome.error == blocked("0177.0.0.1 is 127.0.0.1, a loopback address")
    assert public.error is not None and public.error.startswith("invalid webhook URL")


async def test_non_standard_spellings_of_public_addresses_are_refused_not_guessed() -> None:
    async with Sender(timeout=1.0, allowed_networks=LOOPBACK) as sender:
        outcome = await sender.send("http://134744072/webhooks", {}, BODY)
        allowed_trick = await sender.send("http://0x7f.1/webhooks", {}, BODY)
    assert outcome.error == (
        "cannot deliver to http://134744072/webhooks: the host '134744072' is a non-standard spelling "
        "of the IP address 8.8.8.8; write it as 8.8.8.8"
    )
    assert allowed_trick.error is not None and "write it as 127.0.0.1" in allowed_trick.error


# --- send time: names and DNS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "answer", "what"),
    [
        (PUBLIC_NAME, ["10.0.0.5"], "hooks.example.com resolves to 10.0.0.5, a private address"),
        (
            PUBLIC_NAME,
            ["169.254.169.254"],
            "hooks.example.com resolves to 169.254.169.254, a link-local (cloud metadata) address",
        ),
        (PUBLIC_NAME, ["::ffff:127.0.0.1"], "hooks.example.com resolves to ::ffff:127.0.0.1, a loopback address"),
        (PUBLIC_NAME, ["10.0.0.5", "fd00::5"], "hooks.example.com resolves to 10.0.0.5, a private address"),
        ("HOOKS.Example.COM", ["100.64.0.9"], "hooks.example.com resolves to 100.64.0.9, a shared/CGNAT address"),
        ("internal.example.", ["10.0.0.5"], "internal.example. resolves to 10.0.0.5, a private address"),
        ("localhost", ["127.0.0.1", "::1"], "localhost resolves to 127.0.0.1, a loopback address"),
    ],
)
async def test_names_resolving_only_to_blocked_addresses_are_refused_at_send_time(
    host: str, answer: list[str], what: str
) -> None:
    resolver = StubResolver({host.lower(): [answer]})
    async with Sender(timeout=2.0, transport=guarded_transport([], resolver)) as sender:
        outcome = await sender.send(f"https://{host}/webhooks", {}, BODY)
    assert outcome.error == blocked(what)
    assert resolver.calls == [host.lower()]


async def test_percent_encoded_host_is_not_decoded_into_an_internal_name(receiver: Receiver) -> None:
    port = port_of(receiver.url)
    resolver = StubResolver({"localhost": [["127.0.0.1"]]})
    async with Sender(timeout=2.0, transport=guarded_transport(LOOPBACK, resolver)) as sender:
        outcome = await sender.send(url_for("%6c%6fcalhost", port), {}, BODY)
    assert outcome.error == "DNS lookup failed for %6c%6fcalhost (Name or service not known)"
    assert resolver.calls == ["%6c%6fcalhost"]
    assert receiver.requests == []


async def test_dns_rebinding_second_connection_is_refused(twin: Twin) -> None:
    """The name answers an allowed address first and an internal one next: the first delivery
    goes through, the second (a new connection, resolved again) is refused and never connects."""
    twin.first.headers["Connection"] = "close"  # every delivery opens a new connection
    resolver = StubResolver({PUBLIC_NAME: [["127.0.0.1"], ["127.0.0.2"]]})
    url = url_for(PUBLIC_NAME, twin.port)
    async with Sender(timeout=2.0, transport=guarded_transport(ONLY_127_0_0_1, resolver)) as sender:
        first = await sender.send(url, {}, BODY)
        second = await sender.send(url, {}, BODY)
    assert first.success, first.error
    assert second.error == blocked(f"{PUBLIC_NAME} resolves to 127.0.0.2, a loopback address")
    assert resolver.calls == [PUBLIC_NAME, PUBLIC_NAME]
    assert len(twin.first.requests) == 1 and twin.second.requests == []


async def test_dns_rebinding_after_create_is_caught_when_testing(sqlite_url: str, twin: Twin) -> None:
    """Public at create time, internal when delivering: the attempt is logged as blocked."""
    resolver = StubResolver({PUBLIC_NAME: [["127.0.0.1"], ["127.0.0.2"]]})
    async with open_hub(sqlite_url, ONLY_127_0_0_1, resolver) as hub:
        created = await hub.service.create_webhook(url_for(PUBLIC_NAME, twin.port), ["order.created"])
        result = await hub.service.test_webhook(created.id)
        assert result.error == blocked(f"{PUBLIC_NAME} resolves to 127.0.0.2, a loopback address")
        (entry,) = (await hub.service.get_logs(created.id)).attempts
        assert entry.error == result.error
    assert twin.first.requests == [] and twin.second.requests == []


async def test_a_name_with_allowed_and_blocked_addresses_connects_only_to_the_allowed_one(twin: Twin) -> None:
    resolver = StubResolver({PUBLIC_NAME: [["127.0.0.2", "127.0.0.1"]]})
    url = url_for(PUBLIC_NAME, twin.port)
    async with Sender(timeout=2.0, transport=guarded_transport(ONLY_127_0_0_1, resolver)) as sender:
        for _ in range(3):
            outcome = await sender.send(url, {}, BODY)
            assert outcome.success, outcome.error
    assert len(twin.first.requests) == 3 and twin.second.requests == []
    # The control: allow both and the first answer (127.0.0.2) is the one connected to.
    async with Sender(timeout=2.0, transport=guarded_transport(LOOPBACK, resolver)) as sender:
        assert (await sender.send(url, {}, BODY)).success
    assert len(twin.second.requests) == 1


async def test_a_name_with_no_usable_answer_fails_cleanly() -> None:
    resolver = StubResolver({PUBLIC_NAME: [[]]})
    async with Sender(timeout=2.0, transport=guarded_transport([], resolver)) as sender:
        outcome = await sender.send(f"https://{PUBLIC_NAME}/webhooks", {}, BODY)
    assert outcome.error == f"DNS lookup failed for {PUBLIC_NAME} ({PUBLIC_NAME} resolved to no usable address)"
    assert await check_destination(f"https://{PUBLIC_NAME}/webhooks", [], resolver=resolver) is None


# --- the allow-list opens exactly what it names -------------------------------------------------------


def test_allow_list_opens_exactly_the_named_cidr() -> None:
    allowed: list[Network] = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00:1::/64")]
    opened = ["10.0.0.0", "10.0.0.5", "10.0.0.255", "fd00:1::1"]
    closed = [
        "10.0.1.0",
        "10.255.255.255",
        "10.1.0.5",
        "127.0.0.1",
        "169.254.169.254",
        "192.168.0.1",
        "fd00:2::1",
        "::1",
        # IPv6 forms carrying an allowed IPv4 address: the connection goes to the IPv6 address
        "::ffff:10.0.0.7",
        "64:ff9b::a00:9",
        "2002:a00:5::1",
    ]
    for address in opened:
        assert blocked_reason(ipaddress.ip_address(address), allowed) is None, address
    for address in closed:
        assert blocked_reason(ipaddress.ip_address(address), allowed) is not None, address
    # Nothing but the setting opens anything: with it empty, the opened ones are refused again.
    for address in opened:
        assert blocked_reason(ipaddress.ip_address(address), []) is not None, address


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("2002:7f00:1::1", "loopback address"),
        ("64:ff9b::7f00:1", "loopback address"),
        ("::ffff:127.0.0.1", "loopback address"),
    ],
)
async def test_an_allowed_ipv4_range_does_not_open_ipv6_forms_embedding_it(
    sqlite_url: str, address: str, what: str
) -> None:
    """Allowing 127.0.0.1/32 opens 127.0.0.1, not the 6to4, NAT64 or mapped IPv6 addresses that carry
    it: at create time, and again when a delivery connects."""
    url = f"http://[{address}]/hooks"
    message = blocked(f"{address} is a {what}")
    assert blocked_reason(ipaddress.ip_address(address), ONLY_127_0_0_1) == what
    assert await check_destination(url, ONLY_127_0_0_1) == message
    async with open_hub(sqlite_url, ONLY_127_0_0_1) as hub:
        with pytest.raises(InvalidArgumentError) as info:
            await hub.service.create_webhook(url, ["order.created"])
        assert str(info.value) == refused(url, f"{address} is a {what}")
    async with Sender(timeout=1.0, allowed_networks=ONLY_127_0_0_1) as sender:
        outcome = await sender.send(url, {}, BODY)
    assert outcome.error == message


def test_an_embedding_ipv6_range_is_opened_when_it_is_listed_itself() -> None:
    for network, address in [
        ("2002:7f00:1::/48", "2002:7f00:1::1"),
        ("64:ff9b::7f00:0/120", "64:ff9b::7f00:1"),
        ("::ffff:127.0.0.0/104", "::ffff:127.0.0.1"),
    ]:
        listed: list[Network] = [ipaddress.ip_network(network)]
        assert blocked_reason(ipaddress.ip_address(address), listed) is None, network
        assert blocked_reason(ipaddress.ip_address("127.0.0.1"), listed) == "loopback address", network


async def test_allow_list_of_one_address_reaches_it_and_not_its_neighbour(twin: Twin) -> None:
    async with Sender(timeout=2.0, allowed_networks=ONLY_127_0_0_1) as sender:
        allowed = await sender.send(url_for("127.0.0.1", twin.port), {}, BODY)
        neighbour = await sender.send(url_for("127.0.0.2", twin.port), {}, BODY)
    assert allowed.success, allowed.error
    assert neighbour.error == blocked("127.0.0.2 is a loopback address")
    assert len(twin.first.requests) == 1 and twin.second.requests == []


async def test_allow_list_applies_at_create_time(sqlite_url: str) -> None:
    async with open_hub(sqlite_url, [ipaddress.ip_network("10.0.0.0/24")]) as hub:
        created = await hub.service.create_webhook("http://10.0.0.5/hooks", ["order.created"])
        assert created.url == "http://10.0.0.5/hooks"
        with pytest.raises(InvalidArgumentError) as info:
            await hub.service.create_webhook("http://10.0.1.5/hooks", ["order.created"])
        assert str(info.value) == refused("http://10.0.1.5/hooks", "10.0.1.5 is a private address")


# --- create and update time -------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "what"), LITERAL_FORMS)
async def test_literal_forms_are_refused_at_create_and_update(sqlite_url: str, host: str, what: str) -> None:
    url = f"https://{host}/webhooks"
    async with open_hub(sqlite_url) as hub:
        with pytest.raises(InvalidArgumentError) as info:
            await hub.service.create_webhook(url, ["order.created"])
        assert str(info.value) == refused(url, what)
        assert (await hub.service.list_webhooks()).total == 0
        kept = await hub.service.create_webhook(f"https://{PUBLIC_IP}/webhooks", ["order.created"])
        with pytest.raises(InvalidArgumentError) as info:
            await hub.service.update_webhook(kept.id, url=url)
        assert str(info.value) == refused(url, what)
        assert (await hub.service.get_webhook(kept.id)).url == f"https://{PUBLIC_IP}/webhooks"


@pytest.mark.parametrize(
    ("host", "answers", "what"),
    [
        (PUBLIC_NAME, ["10.0.0.5"], "hooks.example.com resolves to 10.0.0.5, a private address"),
        (
            PUBLIC_NAME,
            ["169.254.169.254"],
            "hooks.example.com resolves to 169.254.169.254, a link-local (cloud metadata) address",
        ),
        (
            PUBLIC_NAME,
            ["::ffff:10.0.0.5", "fd00::5"],
            "hooks.example.com resolves to ::ffff:10.0.0.5, a private address",
        ),
        (PUBLIC_NAME, ["64:ff9b::7f00:1"], "hooks.example.com resolves to 64:ff9b::7f00:1, a loopback address"),
        ("Internal.Example.", ["192.168.7.7"], "internal.example. resolves to 192.168.7.7, a private address"),
    ],
)
async def test_names_resolving_only_to_blocked_addresses_are_refused_at_create(
    sqlite_url: str, host: str, answers: list[str], what: str
) -> None:
    resolver = StubResolver({host.lower(): [answers]})
    async with open_hub(sqlite_url, resolver=resolver) as hub:
        with pytest.raises(InvalidArgumentError) as info:
            await hub.service.create_webhook(f"https://{host}/webhooks", ["order.created"])
        assert str(info.value) == refused(f"https://{host}/webhooks", what)
        assert (await hub.service.list_webhooks()).total == 0


async def test_names_are_accepted_at_create_when_one_address_is_public_or_they_do_not_resolve(
    sqlite_url: str,
) -> None:
    resolver = StubResolver({"mixed.example.com": [[PUBLIC_IP, "10.0.0.5"]], "public.example.com": [[PUBLIC_IP]]})
    async with open_hub(sqlite_url, resolver=resolver) as hub:
        for host in ("mixed.example.com", "public.example.com", "not-yet.example.com"):
            created = await hub.service.create_webhook(f"https://{host}/webhooks", ["order.created"])
            assert created.url == f"https://{host}/webhooks"
        created = await hub.service.create_webhook(f"https://{PUBLIC_NAME}/a", ["order.created"])
        moved = await hub.service.update_webhook(created.id, url="https://not-yet.example.com/b")
        assert moved.url == "https://not-yet.example.com/b"
    assert resolver.calls.count("not-yet.example.com") == 2


async def test_update_refuses_a_name_resolving_to_blocked_addresses(sqlite_url: str) -> None:
    resolver = StubResolver({"intranet.example.com": [["10.1.2.3"]]})
    async with open_hub(sqlite_url, resolver=resolver) as hub:
        created = await hub.service.create_webhook(f"https://{PUBLIC_NAME}/a", ["order.created"])
        with pytest.raises(InvalidArgumentError) as info:
            await hub.service.update_webhook(created.id, url="https://intranet.example.com/b", description="moved")
        assert str(info.value) == refused(
            "https://intranet.example.com/b", "intranet.example.com resolves to 10.1.2.3, a private address"
        )
        unchanged = await hub.service.get_webhook(created.id)
        assert unchanged.url == f"https://{PUBLIC_NAME}/a" and unchanged.description == ""


async def test_create_time_lookup_uses_the_real_resolver(sqlite_url: str) -> None:
    async with open_hub(sqlite_url) as hub:
        for host in ("localhost", "LOCALHOST"):
            with pytest.raises(InvalidArgumentError) as info:
                await hub.service.create_webhook(f"http://{host}:8080/hook", ["order.created"])
            assert str(info.value).startswith(
                f"url http://{host}:8080/hook is refused: blocked: localhost resolves to "
            )
            assert str(info.value).endswith(f"a loopback address; allow it with {ALLOW}")


async def test_create_time_lookup_is_bounded() -> None:
    resolver = StubResolver(hang=True)
    start = time.perf_counter()
    with anyio.fail_after(3):
        refusal = await check_destination(f"https://{PUBLIC_NAME}/", [], resolver=resolver, resolve_seconds=0.2)
    assert refusal is None  # a name that does not answer in time is accepted; deliveries check again
    assert 0.15 <= time.perf_counter() - start < 2.0


async def test_non_standard_and_invalid_numeric_hosts_are_refused_at_create(sqlite_url: str) -> None:
    async with open_hub(sqlite_url) as hub:
        for url, message in [
            (
                "http://134744072/",
                "the host '134744072' is a non-standard spelling of the IP address 8.8.8.8; write it as 8.8.8.8",
            ),
            (
                "http://8.8.8.8./",
                "the host '8.8.8.8.' is a non-standard spelling of the IP address 8.8.8.8; write it as 8.8.8.8",
            ),
            (
                "http://999.1.1.1/",
                "the host '999.1.1.1' looks like an IP address but is not a valid one; check the URL",
            ),
            ("http://%6c%6fcalhost/", "is not a valid host name or IP address"),
        ]:
            with pytest.raises(InvalidArgumentError) as info:
                await hub.service.create_webhook(url, ["order.created"])
            assert message in str(info.value), (url, info.value)
        assert (await hub.service.list_webhooks()).total == 0


async def test_mcp_tools_report_the_refusal(sqlite_url: str) -> None:
    resolver = StubResolver({"metadata.example.com": [["169.254.169.254"]]})
    async with open_hub(sqlite_url, resolver=resolver) as hub, Client(create_server(hub=hub)) as client:
        result = await client.call_tool(
            "create_webhook", {"url": "http://169.254.169.254/latest/meta-data/", "events": ["order.created"]}
        )
        assert result.is_error
        text = "".join(getattr(block, "text", "") for block in result.content)
        assert blocked("169.254.169.254 is a link-local (cloud metadata) address") in text
        assert "Traceback" not in text
        created = await client.call_tool(
            "create_webhook", {"url": f"https://{PUBLIC_NAME}/", "events": ["order.created"]}
        )
        assert not created.is_error
        assert isinstance(created.structured_content, dict)
        result = await client.call_tool(
            "update_webhook", {"id": created.structured_content["id"], "url": "https://metadata.example.com/"}
        )
        assert result.is_error
        text = "".join(getattr(block, "text", "") for block in result.content)
        assert (
            blocked("metadata.example.com resolves to 169.254.169.254, a link-local (cloud metadata) address") in text
        )


# --- redirects, response size, attempt time, request size ---------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(sqlite_url: str, receiver_factory: ReceiverFactory, status: int) -> None:
    target = await receiver_factory()
    redirecting = await receiver_factory(statuses=[status], headers={"Location": target.url})
    async with open_hub(sqlite_url, LOOPBACK) as hub:
        created = await hub.service.create_webhook(redirecting.url, ["order.created"])
        result = await hub.service.test_webhook(created.id)
        assert not result.success and result.status_code == status
        assert result.error is not None
        assert result.error.startswith(f"HTTP {status} redirect to {target.url} (redirects are not followed")
        (entry,) = (await hub.service.get_logs(created.id)).attempts
        assert entry.error == result.error
    assert len(redirecting.requests) == 1 and target.requests == []


@dataclass
class Endless:
    url: str
    finished: anyio.Event
    sent: int = 0


@pytest.fixture
async def endless() -> AsyncIterator[Endless]:
    """A receiver whose 200 response body never ends: it writes until the client hangs up."""
    state = Endless(url="", finished=anyio.Event())

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while state.sent < 1 << 30:
                await response.write(chunk)
                state.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            state.finished.set()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_response_body_is_read_only_up_to_the_cap(sqlite_url: str, endless: Endless) -> None:
    async with open_hub(sqlite_url, LOOPBACK, delivery_timeout=5.0) as hub:
        created = await hub.service.create_webhook(endless.url, ["order.created"])
        start = time.perf_counter()
        result = await hub.service.test_webhook(created.id)
        elapsed = time.perf_counter() - start
        assert result.success, result.error
        assert result.response_excerpt == "x" * 1024
        assert elapsed < 4.0  # returned long before the timeout: it stopped reading, it did not time out
        with anyio.fail_after(5):
            await endless.finished.wait()  # the connection was dropped, so the endless writer stopped
    assert endless.sent < 256 * 1024 * 1024


async def test_a_hanging_receiver_is_bounded_by_the_delivery_timeout(sqlite_url: str, receiver: Receiver) -> None:
    receiver.hang = True
    async with open_hub(sqlite_url, LOOPBACK, delivery_timeout=0.5) as hub:
        created = await hub.service.create_webhook(receiver.url, ["order.created"])
        start = time.perf_counter()
        with anyio.fail_after(3):
            result = await hub.service.test_webhook(created.id)
        elapsed = time.perf_counter() - start
        assert result.error == "timed out after 0.5s waiting for a response"
        assert 0.4 <= elapsed < 2.0
        (entry,) = (await hub.service.get_logs(created.id)).attempts
        assert entry.error == result.error
    assert len(receiver.requests) == 1


async def test_a_receiver_that_stalls_mid_body_is_bounded_too(sqlite_url: str) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        await release.wait()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", stall)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with open_hub(sqlite_url, LOOPBACK, delivery_timeout=0.5) as hub:
            created = await hub.service.create_webhook(url_for("127.0.0.1", runner.addresses[0][1]), ["order.created"])
            with anyio.fail_after(3):
                result = await hub.service.test_webhook(created.id)
            assert result.error == "timed out after 0.5s waiting for a response"
    finally:
        release.set()
        await runner.cleanup()


async def test_publish_refuses_bodies_over_the_default_cap(sqlite_url: str, receiver: Receiver) -> None:
    async with open_hub(sqlite_url, LOOPBACK) as hub, Client(create_server(hub=hub)) as client:
        assert hub.settings.max_payload_bytes == 256 * 1024
        await hub.service.create_webhook(receiver.url, ["order.created"])
        data = dict(hub.catalog.get("order.created").example)
        data["note"] = "x" * (256 * 1024)
        with pytest.raises(InvalidArgumentError) as info:
            await hub.publish("order.created", data)
        message = str(info.value)
        assert message.startswith("event body is ") and "the limit is 262144 (WEBHOOK_MCP_MAX_PAYLOAD_BYTES)" in message
        assert "Send less data" in message
        result = await client.call_tool("send_event", {"event": "order.created", "data": data})
        assert result.is_error
        assert "the limit is 262144" in "".join(getattr(block, "text", "") for block in result.content)
        stats = await hub.service.get_stats(1)
        assert stats.pending_deliveries == 0 and stats.total_attempts == 0
        data["note"] = "x" * (200 * 1024)
        assert (await hub.publish("order.created", data)).queued == 1
