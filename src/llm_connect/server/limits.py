"""Per-key and per-tenant rpm / tpm limits: a sliding-window counter, in memory or in Redis.

The estimate for "the last minute" is ``previous_window * (1 - elapsed / 60) + current_window`` (the
Cloudflare approximation): smooth, two counters per subject, O(1). A request is admitted when its subject is
below its rpm (counting this request) and below its tpm (tokens already used); the tokens of a finished call
are added afterwards. Rejections are 429 ``rate_limit_exceeded`` with Retry-After.

:class:`MemoryRateLimiter` serves one process; :class:`RedisRateLimiter` shares the counters between
workers and replicas. Small limits are exact (one Lua call to admit each request); big ones are admitted
in process from *blocks* of requests each worker takes from Redis atomically (so the shared count is never
passed), and tokens are added in batches off the response path (see :class:`RedisRateLimiter`).
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


# one batched sync. KEYS: per item cur, prev. ARGV: elapsed, n, then per item rpm (-1 = none), requests to
# take as a block, tokens to add. Returns per item "granted,cur_r,cur_t,prev_r,prev_t".
_SYNC_LUA = """
local w = 1 - tonumber(ARGV[1]) / 60
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local cur, prev = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local rpm, take, add = tonumber(ARGV[3 + 3 * i]), tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i])
  if add > 0 then redis.call('HINCRBY', cur, 't', add) end
  local c = redis.call('HMGET', cur, 'r', 't')
  local p = redis.call('HMGET', prev, 'r', 't')
  local cr, ct = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  local pr, pt = tonumber(p[1]) or 0, tonumber(p[2]) or 0
  local grant = 0
  if take > 0 then
    grant = take
    if rpm >= 0 then grant = math.max(0, math.min(take, math.floor(rpm - pr * w - cr))) end
    if grant > 0 then cr = redis.call('HINCRBY', cur, 'r', grant) end
  end
  if add > 0 or grant > 0 then redis.call('EXPIRE', cur, 130) end
  out[#out + 1] = string.format('%d,%d,%d,%d,%d', grant, cr, ct, pr, pt)
end
return out
"""

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


class _Window:
    """A batched scope's view of its shared counters, and this worker's block of requests."""

    __slots__ = ("block", "cur_r", "cur_t", "dry_at", "inflight", "prev_r", "prev_t", "read_at", "tokens", "win")

    def __init__(self, win: int) -> None:
        self.win = win
        #: requests this worker may still admit in window ``win`` (already counted in Redis)
        self.block = 0
        #: the shared counters as last read (this worker's blocks and flushed tokens included)
        self.cur_r = self.cur_t = self.prev_r = self.prev_t = 0
        self.read_at = -1e9
        #: tokens not yet added in Redis
        self.tokens = 0
        self.inflight: asyncio.Future[None] | None = None
        #: when a block was last refused (the limit is reached: refuse without asking again for a moment)
        self.dry_at = -1e9

    def roll(self, win: int) -> None:
        if win == self.win:
            return
        if win == self.win + 1:
            self.prev_r, self.prev_t = self.cur_r, self.cur_t + self.tokens
        else:
            self.prev_r = self.prev_t = 0
        self.win, self.block, self.cur_r, self.cur_t, self.tokens = win, 0, 0, 0, 0
        self.read_at = self.dry_at = -1e9


class RedisRateLimiter:
    """Counters in Redis, shared by every worker and replica using the same URL and namespace.

    A scope is *exact* when its rpm is below ``block_min_rpm`` (or its tpm below ``block_min_tpm``): each
    request runs one Lua script that counts it only if it fits, as before. Bigger scopes are *batched*: a
    worker takes a block of ``rpm // 50`` requests at once (counted in Redis, granted only as far as the
    limit allows, so all workers together never pass it) and admits from the block without a round trip;
    tokens are added every ``flush_interval`` in one script that also reads the shared counters back. The
    tpm check (a soft limit: a call admitted below it may end above) uses the counters read at most
    ``max_age`` seconds ago plus this worker's own. The block left unused when a minute ends counts as used
    (at most 2 % of the rpm per worker).
    """

    def __init__(
        self,
        url: str,
        namespace: str = "llmc",
        clock: Any = time.time,
        *,
        block_min_rpm: int = 100,
        block_min_tpm: int = 10_000,
        flush_interval: float = 0.05,
        max_age: float = 1.0,
    ) -> None:
        import redis.asyncio  # noqa: F401 - fail at start, not on the first request

        self.url = url
        self.namespace = namespace
        self._clock = clock
        self.block_min_rpm = block_min_rpm
        self.block_min_tpm = block_min_tpm
        self.flush_interval = flush_interval
        self.max_age = max_age
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._windows: dict[str, _Window] = {}
        #: tokens of a window that ended before they were flushed: (scope id, window) -> tokens
        self._late: dict[tuple[str, int], int] = {}
        self._flush_task: asyncio.Task[None] | None = None
        self.round_trips = 0

    def _client(self) -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            from .._redis import async_client

            client = async_client(self.url)
            entry = self._clients[loop] = (
                client,
                client.register_script(_ACQUIRE_LUA),
                client.register_script(_SYNC_LUA),
            )
        return entry

    def _key(self, sid: str, win: int) -> str:
        return f"{self.namespace}:rl:{sid}:{win}"

    def batched(self, s: LimitScope) -> bool:
        """The rule: a scope is admitted from blocks when every limit it has is big."""
        if s.rpm is None and s.tpm is None:
            return False
        return (s.rpm is None or s.rpm >= self.block_min_rpm) and (s.tpm is None or s.tpm >= self.block_min_tpm)

    @staticmethod
    def _block(s: LimitScope) -> int:
        return max(1, s.rpm // 50) if s.rpm is not None else 0

    async def acquire(self, scopes: Sequence[LimitScope]) -> None:
        now = self._clock()
        win = int(now // WINDOW)
        elapsed = now - win * WINDOW
        exact = [s for s in scopes if not self.batched(s)]
        taken: list[_Window] = []
        try:
            for s in scopes:
                if self.batched(s):
                    taken.append(await self._admit(s, win, elapsed))
            if exact:
                await self._acquire_exact(exact, win, elapsed)
        except BaseException:
            for w in taken:  # refused elsewhere: this request was not admitted, give its slot back
                if w.win == win:
                    w.block += 1
            raise

    async def _admit(self, s: LimitScope, win: int, elapsed: float) -> _Window:
        w = self._windows.get(s.id)
        if w is None:
            w = self._windows[s.id] = _Window(win)
        for _ in range(100):
            self._roll(s.id, w, win)
            stale = time.monotonic() - w.read_at > self.max_age
            dry = s.rpm is not None and w.block <= 0 and time.monotonic() - w.dry_at < self.flush_interval
            if not dry and ((s.rpm is not None and w.block <= 0) or (s.tpm is not None and stale)):
                if not await self._refresh(s, w, win, elapsed) or w.win != win:
                    continue  # another caller's block was taken (and maybe used up): look again
            if s.tpm is not None:
                weight = 1.0 - elapsed / WINDOW
                est = w.prev_t * weight + w.cur_t + w.tokens
                if est >= s.tpm:
                    raise rate_limited(s, "tokens", s.tpm, _retry_after(w.prev_t, w.cur_t, s.tpm, 1, elapsed))
            if s.rpm is not None:
                if w.block <= 0:
                    raise rate_limited(s, "requests", s.rpm, _retry_after(w.prev_r, w.cur_r, s.rpm, 1, elapsed))
                w.block -= 1
            return w
        raise rate_limited(s, "requests", s.rpm or 0, 1.0)  # pragma: no cover - windows rolling over and over

    def _roll(self, sid: str, w: _Window, win: int) -> None:
        if w.win != win and w.tokens:
            self._late[(sid, w.win)] = self._late.get((sid, w.win), 0) + w.tokens
            w.tokens = 0
        w.roll(win)

    async def _refresh(self, s: LimitScope, w: _Window, win: int, elapsed: float) -> bool:
        """Take a block (and read the counters) for one scope; callers arriving meanwhile wait for it.
        Returns False for a caller that only waited for another's refresh."""
        if w.inflight is not None:
            await asyncio.shield(w.inflight)
            return False
        fut = w.inflight = asyncio.get_running_loop().create_future()
        try:
            take = self._block(s) if s.rpm is not None and w.block <= 0 else 0
            await self._sync([(s, w, take)], win, elapsed)
            if take and w.block <= 0:
                w.dry_at = time.monotonic()
        finally:
            w.inflight = None
            fut.set_result(None)
        return True

    async def _sync(self, items: list[tuple[LimitScope, _Window, int]], win: int, elapsed: float) -> None:
        """One round trip: take blocks, add tokens (also late ones), read the counters back."""
        keys: list[str] = []
        args: list[Any] = [repr(elapsed), 0]
        sent: list[int] = []
        for s, w, take in items:
            keys += (self._key(s.id, win), self._key(s.id, win - 1))
            args += (-1 if s.rpm is None else s.rpm, take, w.tokens)
            sent.append(w.tokens)
            w.tokens = 0
        late, self._late = self._late, {}
        for (sid, lwin), tokens in late.items():
            keys += (self._key(sid, lwin), self._key(sid, lwin - 1))
            args += (-1, 0, tokens)
        args[1] = len(keys) // 2
        _, _, script = self._client()
        self.round_trips += 1
        try:
            res = await script(keys=keys, args=args)
        except Exception as exc:  # Redis down: limits cannot be enforced; fail open, budgets still fail closed
            for (_, w, _), tokens in zip(items, sent, strict=True):
                w.tokens += tokens
            for k, v in late.items():
                self._late[k] = self._late.get(k, 0) + v
            from .errors import log

            log.warning("rate limiter: Redis unreachable (%s: %s); requests admitted", type(exc).__name__, exc)
            for _, w, take in items:
                if take:
                    w.block += take  # admit from a block nobody counted: failing open
                w.read_at = time.monotonic()
            return
        for (_, w, _), raw in zip(items, res, strict=False):
            grant, cr, ct, pr, pt = (int(v) for v in (raw.decode() if isinstance(raw, bytes) else raw).split(","))
            if w.win == win:
                w.block += grant
                w.cur_r, w.cur_t, w.prev_r, w.prev_t = cr, ct, pr, pt
                w.read_at = time.monotonic()

    async def _acquire_exact(self, scopes: Sequence[LimitScope], win: int, elapsed: float) -> None:
        keys: list[str] = []
        args: list[Any] = [repr(elapsed), len(scopes)]
        for s in scopes:
            keys += (self._key(s.id, win), self._key(s.id, win - 1))
            args += (-1 if s.rpm is None else s.rpm, -1 if s.tpm is None else s.tpm)
        _, script, _ = self._client()
        self.round_trips += 1
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
        now = self._clock()
        win = int(now // WINDOW)
        exact = []
        for s in scopes:
            if s.tpm is None:
                continue
            if self.batched(s):
                w = self._windows.get(s.id)
                if w is None:
                    w = self._windows[s.id] = _Window(win)
                self._roll(s.id, w, win)
                w.tokens += tokens
            else:
                exact.append(s)
        if self._flush_task is None and (self._late or any(w.tokens for w in self._windows.values())):
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())
        if not exact:
            return
        client, _, _ = self._client()
        self.round_trips += 1
        try:
            async with client.pipeline(transaction=False) as pipe:
                for s in exact:
                    k = self._key(s.id, win)
                    pipe.hincrby(k, "t", tokens)
                    pipe.expire(k, 130)
                await pipe.execute()
        except Exception as exc:
            from .errors import log

            log.warning("rate limiter: could not add %d tokens (%s: %s)", tokens, type(exc).__name__, exc)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self.flush_interval)
            await self.flush()
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        """Add every batched scope's pending tokens now (and read the shared counters back)."""
        now = self._clock()
        win = int(now // WINDOW)
        elapsed = now - win * WINDOW
        items = []
        for sid, w in self._windows.items():
            self._roll(sid, w, win)
            if w.tokens:
                items.append((LimitScope(sid, None, None), w, 0))
        if items or self._late:
            await self._sync(items, win, elapsed)

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        try:
            await self.flush()
        except Exception:
            pass
        entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[0].aclose()
