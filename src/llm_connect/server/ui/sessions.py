"""Dashboard sessions: a random id in an HttpOnly, SameSite=Strict cookie, the session itself server-side.

The cookie holds 256 random bits and nothing else; the store keys sessions by the sha256 of that id (a
leaked store does not give usable cookies). A session remembers *which key* logged in (its sha256, never the
key), its CSRF token and its expiry: every request re-resolves the key, so a key that is removed or revoked
ends its sessions at once. Sessions live in Redis when the gateway has a ``redis`` section (every worker and
replica sees them), else in this process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "MemorySessions",
    "RedisSessions",
    "Session",
    "SessionStore",
    "cookie_header",
    "new_token",
    "read_cookie",
    "same_token",
]

SESSION_COOKIE = "llmc_session"
#: the pre-login CSRF token (double submit: the login form echoes it)
LOGIN_COOKIE = "llmc_login"
_MAX_ID = 128


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens; False if either is missing."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """One login: ``key_digest`` is the sha256 of the key used ("" when auth is off), ``csrf`` the token
    every POST form must carry, ``expires`` a unix time."""

    key_digest: str
    csrf: str
    expires: float

    @property
    def live(self) -> bool:
        return time.time() < self.expires


class SessionStore(Protocol):
    async def create(self, key_digest: str, ttl: float) -> tuple[str, Session]:
        """A new session; returns (the cookie value, the session)."""
        ...

    async def get(self, sid: str) -> Session | None:
        """The live session of a cookie value, or None."""
        ...

    async def delete(self, sid: str) -> None: ...

    async def aclose(self) -> None: ...


def _usable(sid: str | None) -> bool:
    return bool(sid) and len(sid or "") <= _MAX_ID


class MemorySessions:
    """Sessions in this process (bounded: the oldest are dropped past ``max_sessions``)."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._by_hash: OrderedDict[str, Session] = OrderedDict()
        self._max = max_sessions

    async def create(self, key_digest: str, ttl: float) -> tuple[str, Session]:
        sid = new_token()
        session = Session(key_digest, new_token(), time.time() + ttl)
        self._by_hash[_hash(sid)] = session
        while len(self._by_hash) > self._max:
            self._by_hash.popitem(last=False)
        return sid, session

    async def get(self, sid: str) -> Session | None:
        if not _usable(sid):
            return None
        h = _hash(sid)
        session = self._by_hash.get(h)
        if session is not None and not session.live:
            self._by_hash.pop(h, None)
            return None
        return session

    async def delete(self, sid: str) -> None:
        if _usable(sid):
            self._by_hash.pop(_hash(sid), None)

    async def aclose(self) -> None:
        self._by_hash.clear()


class RedisSessions:
    """Sessions in Redis under ``<namespace>:ui:session:<sha256(id)>``, expiring with the session."""

    def __init__(self, url: str, namespace: str) -> None:
        from ..._redis import LoopClients

        self.url = url
        self.prefix = f"{namespace}:ui:session:"
        self._clients = LoopClients(url)

    def _client(self) -> Any:
        return self._clients.get()

    async def create(self, key_digest: str, ttl: float) -> tuple[str, Session]:
        sid = new_token()
        session = Session(key_digest, new_token(), time.time() + ttl)
        await self._client().set(self.prefix + _hash(sid), orjson.dumps(asdict(session)), ex=max(1, int(ttl)))
        return sid, session

    async def get(self, sid: str) -> Session | None:
        if not _usable(sid):
            return None
        raw = await self._client().get(self.prefix + _hash(sid))
        if raw is None:
            return None
        try:
            session = Session(**orjson.loads(raw))
        except (TypeError, orjson.JSONDecodeError):
            return None
        return session if session.live else None

    async def delete(self, sid: str) -> None:
        if _usable(sid):
            await self._client().delete(self.prefix + _hash(sid))

    async def aclose(self) -> None:
        await self._clients.aclose()


def read_cookie(headers: dict[str, str], name: str) -> str | None:
    """The value of cookie ``name`` in the request's Cookie header (the first one), or None."""
    raw = headers.get("cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v.strip().strip('"') or None
    return None


def cookie_header(name: str, value: str, *, max_age: int, secure: bool) -> tuple[bytes, bytes]:
    """A ``Set-Cookie`` header for the dashboard: HttpOnly, SameSite=Strict, scoped to ``/ui``
    (``max_age`` 0 deletes the cookie); Secure when the request came over HTTPS."""
    parts = [f"{name}={value}", "Path=/ui", "HttpOnly", "SameSite=Strict", f"Max-Age={max(0, int(max_age))}"]
    if secure:
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")
