"""Per-key and per-tenant rpm / tpm limits: a sliding-window counter, in memory or in Redis.

The estimate for "the last minute" is ``previous_window * (1 - elapsed / 60) + current_window`` (the
Cloudflare approximation): smooth, two counters per subject, O(1). A request is admitted when its subject is
below its rpm (counting this request) and below its tpm (tokens already used); the tokens of a finished call
are added afterwards. Rejections are 429 ``rate_limit_exceeded`` with Retry-After.

:class:`MemoryRateLimiter` serves one process; :class:`RedisRateLimiter` shares the counters between
workers and replicas (one Lua call to admit, one pipelined write to add tokens).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from .auth import LimitScope
from .errors import ApiError

__all__ = ["MemoryRateLimiter", "RateLimiter", "RedisRateLimiter", "rate_limited"]

WINDOW = 60.0


def rate_limited(scope: LimitScope, unit: str, limit: int, retry_after: float) -> ApiError:
    who = scope.id.replace(":", " ", 1)
    return ApiError(
        429,
        f"rate limit reached for {who}: {limit} {unit} per minute; retry in {math.ceil(retry_after)} s",
        "rate_limit_error",
        "rate_limit_exceeded",
        headers=[(b"x-ratelimit-limit-" + unit.encode(), str(limit).encode())],
        retry_after=retry_after,
    )


def _retry_after(prev: float, cur: float, limit: float, need: float, elapsed: float) -> float:
    """Seconds until ``prev * (1 - t / 60) + cur + need <= limit`` holds again."""
    to_next = WINDOW - elapsed
    if cur + need > limit:
        # only once the current window has become the previous one, and has decayed enough
        frac = 1.0 - (limit - need) / cur if cur > 0 else 0.0
        return to_next + WINDOW * max(0.0, frac)
    if prev <= 0:
        return 1.0
    t_target = (1.0 - (limit - cur - need) / prev) * WINDOW
    return max(0.05, min(to_next, t_target - elapsed))


class RateLimiter(Protocol):
    async def acquire(self, scopes: Sequence[LimitScope]) -> None: ...

    async def add_tokens(self, scopes: Sequence[LimitScope], tokens: int) -> None: ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """Counters in this process (no awaits inside: safe on one event loop without locks)."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        #: scope id -> [window index, prev requests, cur requests, prev tokens, cur tokens]
        self._c: dict[str, list[float]] = {}

    def _counter(self, sid: str, win: int) -> list[float]:
        c = self._c.get(sid)
        if c is None:
            c = self._c[sid] = [win, 0, 0, 0, 0]
        elif c[0] != win:
            if c[0] == win - 1:
                c[1], c[3] = c[2], c[4]
            else:
                c[1] = c[3] = 0
            c[0], c[2], c[4] = win, 0, 0
        return c

    async def acquire(self, scopes: Sequence[LimitScope]) -> None:
        now = self._clock()
        win = int(now // WINDOW)
        elapsed = now - win * WINDOW
        weight = 1.0 - elapsed / WINDOW
        counters = []
        for s in scopes:
            c = self._counter(s.id, win)
            if s.rpm is not None:
                est = c[1] * weight + c[2]
                if est + 1 > s.rpm:
                    raise rate_limited(s, "requests", s.rpm, _retry_after(c[1], c[2], s.rpm, 1, elapsed))
            if s.tpm is not None:
                est = c[3] * weight + c[4]
                if est >= s.tpm:
                    raise rate_limited(s, "tokens", s.tpm, _retry_after(c[3], c[4], s.tpm, 1, elapsed))
            counters.append(c)
        for c in counters:
            c[2] += 1

    async def add_tokens(self, scopes: Sequence[LimitScope], tokens: int) -> None:
        if tokens <= 0:
            return
        now = self._clock()
        win = int(now // WINDOW)
        for s in scopes:
            if s.tpm is not None:
                self._counter(s.id, win)[4] += tokens

    async def aclose(self) -> None:
        self._c.clear()


# KEYS: per scope cur, prev (hashes with fields r, t). ARGV: elapsed, n, then rpm, tpm per scope (-1 = none)
_ACQUIRE_LUA = """
local elapsed = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local w = 1 - elapsed / 60
for i = 0, n - 1 do
  local cur, prev = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  local c = redis.call('HMGET', cur, 'r', 't')
  local p = redis.call('HMGET', prev, 'r', 't')
  local cr, ct = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  local pr, pt = tonumber(p[1]) or 0, tonumber(p[2]) or 0
  if rpm >= 0 and pr * w + cr + 1 > rpm then return {i + 1, 1, tostring(pr), tostring(cr)} end
  if tpm >= 0 and pt * w + ct >= tpm then return {i + 1, 2, tostring(pt), tostring(ct)} end
end
for i = 0, n - 1 do
  redis.call('HINCRBY', KEYS[1 + 2 * i], 'r', 1)
  redis.call('EXPIRE', KEYS[1 + 2 * i], 130)
end
return {0}
"""


class RedisRateLimiter:
    """Counters in Redis, shared by every worker and replica using the same URL and namespace."""

    def __init__(self, url: str, namespace: str = "llmc", clock: Any = time.time) -> None:
        import redis.asyncio  # noqa: F401 - fail at start, not on the first request

        self.url = url
        self.namespace = namespace
        self._clock = clock
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            from .._redis import async_client

            client = async_client(self.url)
            entry = self._clients[loop] = (client, client.register_script(_ACQUIRE_LUA))
        return entry

    def _key(self, sid: str, win: int) -> str:
        return f"{self.namespace}:rl:{sid}:{win}"

    async def acquire(self, scopes: Sequence[LimitScope]) -> None:
        now = self._clock()
        win = int(now // WINDOW)
        elapsed = now - win * WINDOW
        keys: list[str] = []
        args: list[Any] = [repr(elapsed), len(scopes)]
        for s in scopes:
            keys += (self._key(s.id, win), self._key(s.id, win - 1))
            args += (-1 if s.rpm is None else s.rpm, -1 if s.tpm is None else s.tpm)
        _, script = self._client()
        try:
            res = await script(keys=keys, args=args)
        except Exception as exc:  # Redis down: limits cannot be enforced; fail open, budgets still fail closed
            from .errors import log

            log.warning("rate limiter: Redis unreachable (%s: %s); request admitted", type(exc).__name__, exc)
            return
        if int(res[0]) == 0:
            return
        s = scopes[int(res[0]) - 1]
        prev, cur = float(res[2]), float(res[3])
        if int(res[1]) == 1:
            raise rate_limited(s, "requests", s.rpm or 0, _retry_after(prev, cur, s.rpm or 0, 1, elapsed))
        raise rate_limited(s, "tokens", s.tpm or 0, _retry_after(prev, cur, s.tpm or 0, 1, elapsed))

    async def add_tokens(self, scopes: Sequence[LimitScope], tokens: int) -> None:
        if tokens <= 0:
            return
        win = int(self._clock() // WINDOW)
        client, _ = self._client()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for s in scopes:
                    if s.tpm is not None:
                        k = self._key(s.id, win)
                        pipe.hincrby(k, "t", tokens)
                        pipe.expire(k, 130)
                await pipe.execute()
        except Exception as exc:
            from .errors import log

            log.warning("rate limiter: could not add %d tokens (%s: %s)", tokens, type(exc).__name__, exc)

    async def aclose(self) -> None:
        try:
            entry = self._clients.pop(asyncio.get_running_loop(), None)
        except RuntimeError:
            return
        if entry is not None:
            await entry[0].aclose()
