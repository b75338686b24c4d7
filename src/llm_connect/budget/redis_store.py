"""RedisBudgetStore: budgets shared by every process and replica that points at one Redis.

Each operation is ONE Lua script call (one round trip) over all the levels of the chain, so a reservation on
a child and all its ancestors is atomic. Keys, per level (``{ns}`` = namespace, ``{key}`` = budget id and
UTC period tag, e.g. ``tenant-a:2026-04-01``)::

    {ns}:budget:{key}             hash   s r su ru o ou (spent, reserved, overrun; tokens and nano-dollars)
                                         ft:<threshold> fu:<threshold> (thresholds fired, HSETNX: once)
    {ns}:budget:{key}:leases      zset   member "<res_id>|<tokens>|<usd>", score = lease expiry (ms)
    {ns}:budget:{key}:reclaimed   zset   leases that expired and were reclaimed (kept a day, so a late
                                         settle still charges its spend and a retried one is recognised)
    {ns}:budget:once:{op_id}      string marker of a direct spend already applied (short TTL)

Period keys expire a month after their period ends. Every write is idempotent (lease ids and markers), so the
client may retry a call whose reply was lost; a settle or release that cannot reach Redis is queued in
process and replayed by the next call that gets through.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..errors import LLMConfigurationError
from .stores import (
    LEASE,
    RECORD,
    BudgetStore,
    Crossing,
    Level,
    Refusal,
    ReplayCallback,
    SettleResult,
    Snapshot,
    StoreUnavailableError,
)

try:
    import redis
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError as _RedisError
    from redis.retry import Retry
except ImportError:  # pragma: no cover - exercised only without the extra
    redis = None  # type: ignore[assignment]

__all__ = ["RedisBudgetStore"]

log = logging.getLogger("llm_connect.budget")

_UNITS = ("tokens", "usd")

# ARGV[1] keep-ms for reclaimed ids, ARGV[2] now-ms, ARGV[3] n levels, then 4 per level:
# total, total_usd (-1 = no cap), expire-at seconds (-1 = none), thresholds "0.75,0.9,0.95";
# op arguments start at B. KEYS[1] marker, then 3 per level: hash, leases, reclaimed.
_PRELUDE = """
local KEEP = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local B = 4 + 4 * n
local function lvl(i)
  return KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i],
    tonumber(ARGV[4 + 4 * i]), tonumber(ARGV[5 + 4 * i]), tonumber(ARGV[6 + 4 * i]), ARGV[7 + 4 * i]
end
local function reclaim(k, l, rc)
  local expired = redis.call('ZRANGEBYSCORE', l, '-inf', now)
  if #expired == 0 then return end
  local t, u = 0, 0
  for _, m in ipairs(expired) do
    local rt, ru = string.match(m, '|(%d+)|(%d+)$')
    t = t + tonumber(rt)
    u = u + tonumber(ru)
    redis.call('ZADD', rc, now + KEEP, m)
  end
  redis.call('ZREMRANGEBYSCORE', l, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', rc, '-inf', now)
  redis.call('PEXPIRE', rc, KEEP)
  if t ~= 0 then redis.call('HINCRBY', k, 'r', -t) end
  if u ~= 0 then redis.call('HINCRBY', k, 'ru', -u) end
end
local function expire(k, l, exp)
  if exp >= 0 then
    redis.call('EXPIREAT', k, exp)
    redis.call('EXPIREAT', l, exp)
  end
end
local function state(k)
  local v = redis.call('HMGET', k, 's', 'r', 'su', 'ru')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
end
"""

_RESERVE = (
    _PRELUDE
    + """
local member, tok, usd, untl = ARGV[B], tonumber(ARGV[B + 1]), tonumber(ARGV[B + 2]), ARGV[B + 3]
if redis.call('ZSCORE', KEYS[3], member) then return {1} end
for i = 0, n - 1 do
  local k, l, rc, total, total_usd = lvl(i)
  reclaim(k, l, rc)
  if total >= 0 or total_usd >= 0 then
    local s, r, su, ru = state(k)
    if total >= 0 and s + r + tok > total then return {0, i, 0, total - s - r} end
    if total_usd >= 0 and su + ru + usd > total_usd then return {0, i, 1, total_usd - su - ru} end
  end
end
for i = 0, n - 1 do
  local k, l, rc, total, total_usd, exp = lvl(i)
  if tok ~= 0 then redis.call('HINCRBY', k, 'r', tok) end
  if usd ~= 0 then redis.call('HINCRBY', k, 'ru', usd) end
  redis.call('ZADD', l, untl, member)
  expire(k, l, exp)
end
return {1}
"""
)

_SETTLE = (
    _PRELUDE
    + """
local member, rtok, rusd = ARGV[B], tonumber(ARGV[B + 1]), tonumber(ARGV[B + 2])
local atok, ausd, mode, marker_ms = tonumber(ARGV[B + 3]), tonumber(ARGV[B + 4]), tonumber(ARGV[B + 5]), ARGV[B + 6]
if mode == 0 then
  if not redis.call('ZSCORE', KEYS[3], member) and not redis.call('ZSCORE', KEYS[4], member) then return {-1} end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return {-1}
end
local ctok, cusd, ref = atok, ausd, false
for i = 0, n - 1 do
  local k, l, rc, total, total_usd = lvl(i)
  reclaim(k, l, rc)
  if mode == 0 then
    if redis.call('ZREM', l, member) == 1 then
      if rtok ~= 0 then redis.call('HINCRBY', k, 'r', -rtok) end
      if rusd ~= 0 then redis.call('HINCRBY', k, 'ru', -rusd) end
    else
      redis.call('ZREM', rc, member)
    end
  end
  if total >= 0 or total_usd >= 0 then
    local s, r, su, ru = state(k)
    if total >= 0 then
      local free = math.max(0, total - s - r)
      if free < ctok then
        ctok = free
        if not ref then ref = {0, i, 0, free} end
      end
    end
    if total_usd >= 0 then
      local free = math.max(0, total_usd - su - ru)
      if free < cusd then
        cusd = free
        if not ref then ref = {0, i, 1, free} end
      end
    end
  end
end
if mode == 1 and ref then return ref end
local out = {1, ctok, cusd, atok - ctok, ausd - cusd}
for i = 0, n - 1 do
  local k, l, rc, total, total_usd, exp, thr = lvl(i)
  local s = redis.call('HINCRBY', k, 's', ctok)
  local su = redis.call('HINCRBY', k, 'su', cusd)
  if atok > ctok then redis.call('HINCRBY', k, 'o', atok - ctok) end
  if ausd > cusd then redis.call('HINCRBY', k, 'ou', ausd - cusd) end
  expire(k, l, exp)
  for t in string.gmatch(thr, '[^,]+') do
    local f = tonumber(t)
    if total > 0 and s >= f * total and redis.call('HSETNX', k, 'ft:' .. t, 1) == 1 then
      out[#out + 1] = {i, 0, t, s}
    end
    if total_usd > 0 and su >= f * total_usd and redis.call('HSETNX', k, 'fu:' .. t, 1) == 1 then
      out[#out + 1] = {i, 1, t, su}
    end
  end
end
if mode ~= 0 then redis.call('SET', KEYS[1], '1', 'PX', marker_ms) end
return out
"""
)

_RELEASE = (
    _PRELUDE
    + """
local member, rtok, rusd = ARGV[B], tonumber(ARGV[B + 1]), tonumber(ARGV[B + 2])
for i = 0, n - 1 do
  local k, l, rc = lvl(i)
  if redis.call('ZREM', l, member) == 1 then
    if rtok ~= 0 then redis.call('HINCRBY', k, 'r', -rtok) end
    if rusd ~= 0 then redis.call('HINCRBY', k, 'ru', -rusd) end
  else
    redis.call('ZREM', rc, member)
  end
end
return 1
"""
)

_PEEK = (
    _PRELUDE
    + """
local out = {}
for i = 0, n - 1 do
  local k, l, rc = lvl(i)
  reclaim(k, l, rc)
  out[#out + 1] = redis.call('HGETALL', k)
end
return out
"""
)

_SCRIPTS = {"reserve": _RESERVE, "settle": _SETTLE, "release": _RELEASE, "peek": _PEEK}
#: every way Redis can fail to serve: down, slow, a read-only replica after a failover, out of memory
_DOWN = (_RedisError, OSError) if redis is not None else (OSError,)


def _snapshot(flat: list[bytes]) -> Snapshot:
    vals: dict[str, int] = {}
    fired: set[tuple[str, float]] = set()
    for i in range(0, len(flat), 2):
        name = flat[i].decode()
        if name.startswith("f"):
            fired.add(("tokens" if name[1] == "t" else "usd", float(name[3:])))
        else:
            vals[name] = int(flat[i + 1])
    g = vals.get
    return Snapshot(g("s", 0), g("r", 0), g("su", 0), g("ru", 0), g("o", 0), g("ou", 0), frozenset(fired))


class RedisBudgetStore(BudgetStore):
    """Budget state in Redis (redis-py; ``redis.asyncio`` for the async twins, one client per event loop).

    ``namespace`` prefixes every key. ``client`` may be a ready sync ``redis.Redis``; other keyword
    arguments go to ``Redis.from_url``. Timeouts are short by default so an unreachable Redis fails fast.
    Not for Redis Cluster: a chain's keys must live on one node.
    """

    atomic_async = False  # network round trips: the tracker shields them from cancellation

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "llmc",
        client: Any = None,
        socket_timeout: float = 2.0,
        socket_connect_timeout: float = 1.0,
        reclaim_keep_seconds: float = 86400.0,
        marker_seconds: float = 900.0,
        max_pending: int = 10_000,
        max_connections: int = 64,
        pool_timeout: float = 5.0,
        **redis_kwargs: Any,
    ) -> None:
        if redis is None:
            raise LLMConfigurationError("RedisBudgetStore needs redis-py: pip install 'llm-connect[redis]'")
        if not namespace or any(c in namespace for c in " \n"):
            raise ValueError(f"namespace must be a non-empty word, got {namespace!r}")
        self.url = url
        self.namespace = namespace
        self._opts: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            **redis_kwargs,
        }
        self._pool_opts = {"max_connections": max_connections, "timeout": pool_timeout}
        self._own_client = client is None
        if client is None:
            # a blocking pool: many threads wait for a connection instead of failing with "too many";
            # one quick retry: every script is idempotent, so a retried write never counts twice
            pool = redis.BlockingConnectionPool.from_url(
                url, retry=Retry(NoBackoff(), 1), **self._pool_opts, **self._opts
            )
            client = redis.Redis(connection_pool=pool)
        self._client = client
        self._scripts = {name: self._client.register_script(src) for name, src in _SCRIPTS.items()}
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._alock = threading.Lock()
        self._keep_ms = int(reclaim_keep_seconds * 1000)
        self._marker_ms = int(marker_seconds * 1000)
        self._pending: deque[tuple[str, tuple[Any, ...], ReplayCallback | None]] = deque()
        self._max_pending = max_pending
        self._flushing = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisBudgetStore(url={self.url!r}, namespace={self.namespace!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from its settings in another process (Celery, multiprocessing)
        opts = {**self._opts, "max_connections": self._pool_opts["max_connections"]}
        return (_rebuild, (self.url, self.namespace, {**opts, "pool_timeout": self._pool_opts["timeout"]}))

    # -- clients ---------------------------------------------------------------------------------------
    def _async(self) -> tuple[Any, dict[str, Any]]:
        """(client, scripts) of the running loop: redis.asyncio connections belong to one loop."""
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            with self._alock:
                entry = self._aclients.get(loop)
                if entry is None:
                    pool = aredis.BlockingConnectionPool.from_url(
                        self.url, retry=AsyncRetry(NoBackoff(), 1), **self._pool_opts, **self._opts
                    )
                    client = aredis.Redis(connection_pool=pool)
                    scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}
                    entry = self._aclients[loop] = (client, scripts)
        return entry

    def close(self) -> None:
        """Close the sync client's connections (a client passed in is left to its owner)."""
        if self._own_client:
            self._client.connection_pool.disconnect()

    async def aclose(self) -> None:
        """Close the current loop's async client (and the sync client)."""
        entry = self._aclients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose(close_connection_pool=True)
        self.close()

    # -- argument building --------------------------------------------------------------------------
    def _keys(self, levels: Sequence[Level], op_id: str) -> list[str]:
        ns = self.namespace
        keys = [f"{ns}:budget:once:{op_id}"]
        for lv in levels:
            base = f"{ns}:budget:{lv.key}"
            keys += (base, base + ":leases", base + ":reclaimed")
        return keys

    def _args(self, levels: Sequence[Level], now: float) -> list[Any]:
        args: list[Any] = [self._keep_ms, int(now * 1000), len(levels)]
        for lv in levels:
            args += (
                -1 if lv.total is None else lv.total,
                -1 if lv.total_usd is None else lv.total_usd,
                -1 if lv.expire_at is None else int(lv.expire_at),
                ",".join(repr(t) for t in lv.thresholds),
            )
        return args

    def _call(
        self, name: str, levels: Sequence[Level], op_id: str, now: float, extra: Sequence[Any]
    ) -> tuple[str, list[str], list[Any]]:
        return name, self._keys(levels, op_id), self._args(levels, now) + list(extra)

    def _run(self, call: tuple[str, list[str], list[Any]]) -> Any:
        name, keys, args = call
        try:
            return self._scripts[name](keys=keys, args=args)
        except _DOWN as exc:
            raise StoreUnavailableError(f"redis {self.url}: {exc}") from exc

    async def _arun(self, call: tuple[str, list[str], list[Any]]) -> Any:
        name, keys, args = call
        try:
            return await self._async()[1][name](keys=keys, args=args)
        except _DOWN as exc:
            raise StoreUnavailableError(f"redis {self.url}: {exc}") from exc

    # -- replay of writes that could not reach Redis -----------------------------------------------------
    def _queue(self, call: tuple[str, list[str], list[Any]], on_replay: ReplayCallback | None, exc: Exception) -> None:
        if len(self._pending) >= self._max_pending:
            raise StoreUnavailableError(f"{exc} (replay queue full; not recorded)") from exc
        self._pending.append((call[0], (call[1], call[2]), on_replay))
        raise StoreUnavailableError(str(exc), queued=True) from exc

    def _replayed(self, name: str, raw: Any, on_replay: ReplayCallback | None) -> None:
        if name == "settle" and on_replay is not None:
            try:
                on_replay(self._settle_result(raw))
            except Exception:
                log.exception("budget replay callback failed")

    def _flush(self) -> None:
        if not self._pending or not self._flushing.acquire(blocking=False):
            return
        try:
            while self._pending:
                name, (keys, args), cb = self._pending[0]
                raw = self._run((name, keys, args))
                self._pending.popleft()
                self._replayed(name, raw, cb)
        except StoreUnavailableError:
            pass
        finally:
            self._flushing.release()

    async def _aflush(self) -> None:
        if not self._pending or not self._flushing.acquire(blocking=False):
            return
        try:
            while self._pending:
                name, (keys, args), cb = self._pending[0]
                raw = await self._arun((name, keys, args))
                self._pending.popleft()
                self._replayed(name, raw, cb)
        except StoreUnavailableError:
            pass
        finally:
            self._flushing.release()

    @property
    def pending(self) -> int:
        """Writes waiting to be replayed (Redis was unreachable when they were made)."""
        return len(self._pending)

    # -- result decoding ---------------------------------------------------------------------------------
    @staticmethod
    def _refusal(raw: list[Any]) -> Refusal | None:
        if raw[0] == 1:
            return None
        return Refusal(int(raw[1]), _UNITS[int(raw[2])], max(0, int(raw[3])))

    @staticmethod
    def _settle_result(raw: list[Any]) -> SettleResult:
        if raw[0] == -1:
            return SettleResult(duplicate=True)
        if raw[0] == 0:
            return SettleResult(refusal=Refusal(int(raw[1]), _UNITS[int(raw[2])], max(0, int(raw[3]))))
        crossings = tuple(Crossing(int(c[0]), _UNITS[int(c[1])], float(c[2]), int(c[3])) for c in raw[5:])
        return SettleResult(int(raw[1]), int(raw[2]), int(raw[3]), int(raw[4]), crossings)

    # -- operations --------------------------------------------------------------------------------------
    def _reserve_call(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, until: float
    ) -> tuple[str, list[str], list[Any]]:
        return self._call("reserve", levels, res_id, now, (f"{res_id}|{tokens}|{usd}", tokens, usd, int(until * 1000)))

    def _settle_call(
        self,
        levels: Sequence[Level],
        res_id: str,
        reserved: int,
        reserved_usd: int,
        tokens: int,
        usd: int,
        now: float,
        mode: int,
    ) -> tuple[str, list[str], list[Any]]:
        member = f"{res_id}|{reserved}|{reserved_usd}"
        extra = (member, reserved, reserved_usd, tokens, usd, mode, self._marker_ms)
        return self._call("settle", levels, res_id, now, extra)

    def reserve(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, lease_until: float
    ) -> Refusal | None:
        self._flush()
        return self._refusal(self._run(self._reserve_call(levels, res_id, tokens, usd, now, lease_until)))

    async def areserve(
        self, levels: Sequence[Level], res_id: str, tokens: int, usd: int, now: float, lease_until: float
    ) -> Refusal | None:
        await self._aflush()
        return self._refusal(await self._arun(self._reserve_call(levels, res_id, tokens, usd, now, lease_until)))

    def settle(
        self,
        levels: Sequence[Level],
        res_id: str,
        reserved: int,
        reserved_usd: int,
        tokens: int,
        usd: int,
        now: float,
        mode: int,
        on_replay: ReplayCallback | None = None,
    ) -> SettleResult:
        self._flush()
        call = self._settle_call(levels, res_id, reserved, reserved_usd, tokens, usd, now, mode)
        try:
            return self._settle_result(self._run(call))
        except StoreUnavailableError as exc:
            return self._unsettled(call, mode, on_replay, exc)

    async def asettle(
        self,
        levels: Sequence[Level],
        res_id: str,
        reserved: int,
        reserved_usd: int,
        tokens: int,
        usd: int,
        now: float,
        mode: int,
        on_replay: ReplayCallback | None = None,
    ) -> SettleResult:
        await self._aflush()
        call = self._settle_call(levels, res_id, reserved, reserved_usd, tokens, usd, now, mode)
        try:
            return self._settle_result(await self._arun(call))
        except StoreUnavailableError as exc:
            return self._unsettled(call, mode, on_replay, exc)

    def _unsettled(
        self, call: Any, mode: int, on_replay: ReplayCallback | None, exc: StoreUnavailableError
    ) -> SettleResult:
        if mode not in (LEASE, RECORD):  # a DIRECT spend is a check: the caller decides (fail closed / open)
            raise exc
        self._queue(call, on_replay, exc)  # raises StoreUnavailableError(queued=True)
        raise exc  # pragma: no cover

    def release(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int) -> None:
        self._flush()
        call = self._call("release", levels, res_id, 0.0, (f"{res_id}|{tokens}|{usd}", tokens, usd))
        try:
            self._run(call)
        except StoreUnavailableError as exc:
            self._queue(call, None, exc)

    async def arelease(self, levels: Sequence[Level], res_id: str, tokens: int, usd: int) -> None:
        await self._aflush()
        call = self._call("release", levels, res_id, 0.0, (f"{res_id}|{tokens}|{usd}", tokens, usd))
        try:
            await self._arun(call)
        except StoreUnavailableError as exc:
            self._queue(call, None, exc)

    def peek(self, levels: Sequence[Level], now: float) -> list[Snapshot]:
        self._flush()
        return [_snapshot(flat) for flat in self._run(self._call("peek", levels, "-", now, ()))]

    async def apeek(self, levels: Sequence[Level], now: float) -> list[Snapshot]:
        await self._aflush()
        return [_snapshot(flat) for flat in await self._arun(self._call("peek", levels, "-", now, ()))]

    def delete(self, levels: Sequence[Level]) -> None:
        try:
            self._client.delete(*self._keys(levels, "-")[1:])
        except _DOWN as exc:
            raise StoreUnavailableError(f"redis {self.url}: {exc}") from exc

    async def adelete(self, levels: Sequence[Level]) -> None:
        try:
            await self._async()[0].delete(*self._keys(levels, "-")[1:])
        except _DOWN as exc:
            raise StoreUnavailableError(f"redis {self.url}: {exc}") from exc

    async def aexists(self, level: Level) -> bool:
        try:
            return bool(await self._async()[0].exists(f"{self.namespace}:budget:{level.key}"))
        except _DOWN as exc:
            raise StoreUnavailableError(f"redis {self.url}: {exc}") from exc

    def exists(self, level: Level) -> bool:
        try:
            return bool(self._client.exists(f"{self.namespace}:budget:{level.key}"))
        except _DOWN as exc:
            raise StoreUnavailableError(f"redis {self.url}: {exc}") from exc

    def drop_namespace(self) -> int:
        """Delete every key of this namespace (tests, tear-down). Returns how many were deleted."""
        n = 0
        for key in self._client.scan_iter(match=f"{self.namespace}:budget:*", count=1000):
            n += self._client.delete(key)
        return n


def _rebuild(url: str, namespace: str, opts: dict[str, Any]) -> RedisBudgetStore:
    return RedisBudgetStore(url, namespace=namespace, **opts)
