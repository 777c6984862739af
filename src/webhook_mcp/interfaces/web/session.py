"""Dashboard sessions: signing in with the API token sets a signed, expiring, opaque cookie
(HttpOnly, SameSite=Strict, scoped to the dashboard's path), and every action carries a CSRF token
bound to that session.

The signing key derives from the API token, so sessions survive restarts, work across servers
sharing the token, and all end when the token changes. Without a token (a loopback-only server)
the key is random per process and any visitor gets a session without signing in, as MCP clients
on this machine get the tools; the CSRF token still guards every action.

A tenant's token signs in too: its session carries the token's SHA-256 (signed, never the token),
and every page resolves it again, so the session sees that tenant only and ends with the token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "webhook_mcp_session"
NOTICE_COOKIE = "webhook_mcp_notice"
SESSION_SECONDS = 8 * 3600
NOTICE_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int
    tenant_key: str = ""  # the SHA-256 of the tenant token signed in with; "" for the operator


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, token: str | None, clock: Callable[[], float] = time.time) -> None:
        self.sign_in_required = token is not None
        self._token = token
        self._clock = clock
        if token is None:
            self._key = secrets.token_bytes(32)
        else:
            self._key = hmac.digest(token.encode(), b"webhook-mcp dashboard sessions", hashlib.sha256)

    def _sign(self, purpose: str, payload: str) -> str:
        return _b64(hmac.digest(self._key, f"{purpose}:{payload}".encode(), hashlib.sha256))

    def token_matches(self, given: str) -> bool:
        """Constant-time check of a token typed into the sign-in form."""
        if self._token is None:
            return True
        return hmac.compare_digest(given.strip().encode(), self._token.encode())

    def issue(self, tenant_key: str = "") -> tuple[Session, str]:
        """A new session and its cookie value: ``expiry.nonce[.tenant_key].signature``."""
        session = Session(secrets.token_urlsafe(18), int(self._clock()) + SESSION_SECONDS, tenant_key)
        payload = f"{session.expires}.{session.nonce}" + (f".{tenant_key}" if tenant_key else "")
        return session, f"{payload}.{self._sign('session', payload)}"

    def verify(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, if it was signed here and has not expired."""
        if not cookie or len(cookie) > 300:
            return None
        payload, _, signature = cookie.rpartition(".")
        expires, _, rest = payload.partition(".")
        nonce, _, tenant_key = rest.partition(".")
        if not (expires.isascii() and expires.isdigit() and nonce):
            return None
        if not hmac.compare_digest(signature.encode(), self._sign("session", payload).encode()):
            return None
        if int(expires) <= self._clock():
            return None
        return Session(nonce, int(expires), tenant_key)

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf", session.nonce)

    def csrf_matches(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())

    def seal_notice(self, kind: str, text: str) -> str:
        """A one-time message for the page after an action (post/redirect/get), signed so that no
        one else can put words on the dashboard."""
        payload = _b64(f"{int(self._clock()) + NOTICE_SECONDS}|{kind}|{text}".encode())
        return f"{payload}.{self._sign('notice', payload)}"

    def open_notice(self, cookie: str | None) -> tuple[str, str] | None:
        if not cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign("notice", payload).encode()):
            return None
        try:
            expires, kind, text = _unb64(payload).decode().split("|", 2)
        except (ValueError, UnicodeDecodeError):
            return None
        if not expires.isdigit() or int(expires) <= self._clock():
            return None
        return kind, text
