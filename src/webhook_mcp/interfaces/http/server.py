"""The HTTP server ``serve`` runs: uvicorn's httptools protocol with the limits it lacks, and an access
log that never records query-string values.

httptools parses headers without any bound: one connection sending a single 48 MiB header line
makes the server buffer (and re-copy) it all before answering, stalling every other request, and a
header dripped a byte at a time holds its connection forever. :class:`LimitedHttpToolsProtocol`
counts the bytes of each request head (request line and headers) before they reach the parser,
refuses a head over :data:`MAX_HEAD_BYTES` or with more than :data:`MAX_HEADERS` fields with 431
without reading the rest, and answers 408 to a head still incomplete after the header timeout. (A
pipelined head that starts inside a read is counted from the next read, so it may exceed the limit
by the rest of that one read.) The hot path gains one comparison per read: bench/http_limits.py
measures ingest and MCP latency against plain uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Generator
from typing import Any, ClassVar

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "LimitedHttpToolsProtocol",
    "QueryRedactingFilter",
    "limited_protocol",
    "redact_query",
    "uvicorn_config",
]

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# After a refusal, how long what the client still sends is read and dropped (so the answer is not
# lost to a TCP reset) before the connection is closed regardless.
LINGER_SECONDS = 2.0
ACCESS_LOGGER = "uvicorn.access"
_QUERY_VALUE = re.compile(r"=[^&;#]*")


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a request the server refuses."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads and a deadline for sending one."""

    max_head_bytes: ClassVar[int] = MAX_HEAD_BYTES
    max_headers: ClassVar[int] = MAX_HEADERS
    head_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._heads = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_deadline()  # a connection that never sends a head is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped unread: nothing of a refused request is buffered or parsed
        if not self._in_head:
            self._feed(data)
            return
        if self._head_deadline is None:
            self._start_head_deadline()
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # Only what still fits may reach the parser; the head being counted must end within it.
        heads = self._heads
        self._head_bytes += room
        self._feed(data[:room])
        if self.transport.is_closing() or self._refused:
            return
        if self._heads == heads:
            self._refuse(431, f"the request line and headers are over {self.max_head_bytes} bytes")
            return
        self.data_received(data[room:])

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, telling a refused head (431) from a malformed one (400)."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadRefused) or isinstance(exc.__cause__, _HeadRefused):
                self._refuse(431, f"a request may carry at most {self.max_headers} header fields")
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def on_message_begin(self) -> None:
        self._header_count = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._in_head = False
        self._cancel_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # whatever comes next is the next request's head
        self._head_bytes = 0

    def _start_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self._in_head and not self._refused and not self.transport.is_closing():
            self._refuse(408, f"the request headers did not arrive within {self.head_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer with a JSON error and end the connection, parsing nothing more. The answer is
        followed by FIN, and what the client still sends is dropped for a moment before closing:
        closing on unread data would reset the connection and lose the answer."""
        self._cancel_head_deadline()
        self._refused = True
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        self.logger.warning("refused a request from %s: %s (HTTP %d)", client, message, status)
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        code = "request_timeout" if status == 408 else "headers_too_large"
        body = b'{"error":{"code":"%s","message":"%s"}}' % (code.encode(), message.encode())
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason, len(body), body)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def limited_protocol(
    *, max_head_bytes: int = MAX_HEAD_BYTES, max_headers: int = MAX_HEADERS, head_timeout: float = 10.0
) -> type[LimitedHttpToolsProtocol]:
    """:class:`LimitedHttpToolsProtocol` with these limits (uvicorn instantiates the class itself)."""
    limits = {"max_head_bytes": max_head_bytes, "max_headers": max_headers, "head_timeout": head_timeout}
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), limits)


def redact_query(path: str) -> str:
    """``path`` with every query-string value replaced: ``/mcp?token=***&x=***``. Names stay (they
    help when reading the log); values may be credentials a client put in the wrong place."""
    base, mark, query = path.partition("?")
    return base + mark + _QUERY_VALUE.sub("=***", query) if mark else path


class QueryRedactingFilter(logging.Filter):
    """Redacts query-string values in uvicorn's access log records (their third argument is the
    path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


class SignalFreeServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the lifecycle's stop signals decide when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def uvicorn_config(
    app: ASGIApp, host: str, port: int, log_level: str, *, head_timeout: float, **options: Any
) -> uvicorn.Config:
    """The server configuration ``serve`` runs the HTTP transports with (``options``: more of
    ``uvicorn.Config``'s)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        http=limited_protocol(head_timeout=head_timeout),
        **options,
    )
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, QueryRedactingFilter) for existing in access.filters):
        access.addFilter(QueryRedactingFilter())
    return config
