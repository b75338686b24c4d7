"""RedisRouterState: cooldowns, probes and rpm/tpm counters in Redis, so several replicas agree.

Keys (``ns`` is the namespace, ``d`` the deployment name)::

    {ns}:{d}:cb          the circuit breaker: "until,probe_until,fails,fails_start,tripped" (epoch s);
                         expires once the failure window is over and, after a trip, cooldown + forget_after
    {ns}:{d}:rpm:{min}   requests in that wall-clock minute (expires after 2 minutes)
    {ns}:{d}:tpm:{min}   tokens in that minute

A call costs one MGET before choosing (the breaker key of each deployment of the group, plus the
counters of the deployments that are counted: those with rpm/tpm caps, or all under the usage strategy).
With ``cache_seconds`` > 0 a group without counted deployments is read at most that often: its breakers
are taken from the last read, so another replica's trip is seen up to ``cache_seconds`` late, while this
replica's own failures, probes and resets drop the cached read at once (the gateway uses 0.1 s). Calls that
find the read expired while another call is re-reading it wait for that one MGET (not one each).
A plain success writes nothing; counters, a failure, a probe or the first success after failures cost
one more round trip. Breaker updates are atomic Lua scripts. Latency and in-flight numbers stay local
to each replica.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from typing import Any

from ..errors import LLMConfigurationError
from .health import CooldownPolicy, Status, current_minute

__all__ = ["RedisRouterState"]

_COUNTER_TTL = 120

_PARSE = """
local function load(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local f = {}
  for x in string.gmatch(v, '[^,]+') do f[#f + 1] = tonumber(x) end
  return f
end
local function save(key, f, px)
  local v = string.format('%.3f,%.3f,%d,%.3f,%d', f[1], f[2], f[3], f[4], f[5])
  if px then
    if px < 1 then px = 1 end
    redis.call('SET', key, v, 'PX', math.ceil(px))
  else
    redis.call('SET', key, v, 'KEEPTTL')
  end
end
"""

# KEYS[1] cb. ARGV: now, trip_for ('' = count one failure), window, allowed_fails, cooldown_time, forget_after
_FAIL_LUA = (
    _PARSE
    + """
local now, window, forget = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[6])
local f = load(KEYS[1]) or {0, 0, 0, 0, 0}
local half_open = f[5] == 1 and f[1] <= now
local trip_for = ARGV[2]
if trip_for == '' then
  if half_open or f[4] + window < now then f[3] = 0; f[4] = now end
  f[3] = f[3] + 1
  if f[3] < tonumber(ARGV[4]) and not half_open then
    save(KEYS[1], f, math.max(f[4] + window - now, f[1] - now + forget) * 1000)
    return 0
  end
  trip_for = tonumber(ARGV[5])
else
  trip_for = tonumber(trip_for)
end
save(KEYS[1], {now + trip_for, 0, 0, now, 1}, (trip_for + forget) * 1000)
return 1
"""
)

# KEYS[1] cb. ARGV: now, probe_timeout. 1 = this caller owns the probe.
_CLAIM_LUA = (
    _PARSE
    + """
local now = tonumber(ARGV[1])
local f = load(KEYS[1])
if not f then return 1 end
if f[2] > now then return 0 end
f[2] = now + tonumber(ARGV[2])
save(KEYS[1], f, nil)
return 1
"""
)

# KEYS[1] cb. ARGV: mode ('probe': close the circuit, 'reset': forget failures, 'release': give the probe back)
_RESET_LUA = (
    _PARSE
    + """
local f = load(KEYS[1])
if not f then return 0 end
local mode = ARGV[1]
if mode == 'probe' or (mode == 'reset' and f[5] == 0) then
  redis.call('DEL', KEYS[1])
  return 1
end
if mode == 'reset' then f[3] = 0 else f[2] = 0 end
save(KEYS[1], f, nil)
return 1
"""
)


def _status(raw: bytes | None) -> Status:
    s = Status()
    if raw is not None:
        until, probe, fails, fails_start, tripped = raw.split(b",")
        s.until = float(until)
        s.probe_until = float(probe)
        s.fails = int(fails)
        s.fails_start = float(fails_start)
        s.tripped = tripped == b"1"
    return s


class RedisRouterState:
    """Router state shared through Redis (``redis.asyncio``; install ``llm-connect[redis]``).

    ``RedisRouterState("redis://127.0.0.1:6379/0", namespace="llmc:router")``. One client is opened per
    event loop, lazily; ``client=`` injects a ready ``redis.asyncio.Redis`` instead.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "llm_connect:router",
        *,
        client: Any = None,
        cache_seconds: float = 0.0,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as exc:
            raise LLMConfigurationError(
                "RedisRouterState needs the redis package — install it with: pip install 'llm-connect[redis]'"
            ) from exc
        self.url = url
        self.namespace = namespace.rstrip(":")
        self._client = client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._scripts: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
        self.cache_seconds = float(cache_seconds)
        #: group names -> (monotonic time read, raw breaker values); only groups with nothing counted
        self._cache: dict[tuple[str, ...], tuple[float, list[Any]]] = {}
        #: group names -> the read in flight: the calls arriving meanwhile wait for it, not one MGET each
        self._reading: dict[tuple[str, ...], asyncio.Future[list[Any]]] = {}
        #: bumped when this replica changes a breaker: a read started before lands nowhere
        self._epoch = 0

    def __repr__(self) -> str:
        return f"<RedisRouterState {self.namespace}>"

    def client(self) -> Any:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        c = self._clients.get(loop)
        if c is None:
            from .._redis import async_client

            c = async_client(self.url)
            self._clients[loop] = c
        return c

    def _script(self, client: Any, name: str) -> Any:
        scripts = self._scripts.get(client)
        if scripts is None:
            scripts = self._scripts[client] = {
                "fail": client.register_script(_FAIL_LUA),
                "claim": client.register_script(_CLAIM_LUA),
                "reset": client.register_script(_RESET_LUA),
            }
        return scripts[name]

    def _cb(self, name: str) -> str:
        return f"{self.namespace}:{name}:cb"

    def _counter(self, name: str, kind: str, minute: int) -> str:
        return f"{self.namespace}:{name}:{kind}:{minute}"

    def _drop(self, name: str) -> None:
        """Forget cached reads of every group holding ``name`` (this replica changed its breaker), and the
        reads in flight: the calls after this one read again."""
        self._epoch += 1
        if self._cache:
            for key in [k for k in self._cache if name in k]:
                del self._cache[key]
        if self._reading:
            for key in [k for k in self._reading if name in k]:
                del self._reading[key]

    async def _read(self, key: tuple[str, ...], names: Sequence[str]) -> list[Any]:
        """One MGET of a group's breakers, cached unless a breaker of this replica changed meanwhile."""
        epoch, t = self._epoch, time.monotonic()
        try:
            values = await self.client().mget([self._cb(n) for n in names])
            if epoch == self._epoch:
                self._cache[key] = (t, values)
            return values
        finally:
            if self._reading.get(key) is asyncio.current_task():
                del self._reading[key]

    async def snapshot(self, names: Sequence[str], now: float, counted: Sequence[str] = ()) -> list[Status]:
        if self.cache_seconds > 0 and not counted:
            key = tuple(names)
            hit = self._cache.get(key)
            t = time.monotonic()
            if hit is not None and t - hit[0] < self.cache_seconds:
                return [_status(v) for v in hit[1]]
            reading = self._reading.get(key)
            if reading is None:
                reading = self._reading[key] = asyncio.ensure_future(self._read(key, names))
            # shielded: a caller cancelled meanwhile leaves the read to the others
            return [_status(v) for v in await asyncio.shield(reading)]
        m = current_minute(now)
        keys = [self._cb(n) for n in names]
        for n in counted:
            keys += (self._counter(n, "rpm", m), self._counter(n, "tpm", m))
        values = await self.client().mget(keys)
        out = [_status(v) for v in values[: len(names)]]
        if counted:
            index = {n: i for i, n in enumerate(names)}
            for j, n in enumerate(counted):
                i = index.get(n)
                if i is None:
                    continue
                rpm, tpm = values[len(names) + 2 * j], values[len(names) + 2 * j + 1]
                st = out[i]
                st.minute = m
                st.rpm = int(rpm) if rpm is not None else 0
                st.tpm = int(tpm) if tpm is not None else 0
        return out

    async def claim_probe(self, name: str, now: float, policy: CooldownPolicy) -> bool:
        self._drop(name)
        client = self.client()
        return bool(
            await self._script(client, "claim")(keys=[self._cb(name)], args=[f"{now:.3f}", policy.probe_timeout])
        )

    async def release_probe(self, name: str) -> None:
        self._drop(name)
        client = self.client()
        await self._script(client, "reset")(keys=[self._cb(name)], args=["release"])

    async def record_start(self, name: str, now: float) -> None:
        key = self._counter(name, "rpm", current_minute(now))
        pipe = self.client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, _COUNTER_TTL)
        await pipe.execute()

    async def record_success(
        self, name: str, now: float, *, requests: int = 0, tokens: int = 0, probe: bool = False, reset: bool = False
    ) -> None:
        client = self.client()
        m = current_minute(now)
        if requests or tokens:
            pipe = client.pipeline(transaction=False)
            for kind, n in (("rpm", requests), ("tpm", tokens)):
                if n:
                    key = self._counter(name, kind, m)
                    pipe.incrby(key, n)
                    pipe.expire(key, _COUNTER_TTL)
            await pipe.execute()
        if probe or reset:
            self._drop(name)
            await self._script(client, "reset")(keys=[self._cb(name)], args=["probe" if probe else "reset"])

    async def record_failure(self, name: str, now: float, policy: CooldownPolicy, *, trip_for: float | None) -> bool:
        self._drop(name)
        client = self.client()
        args = [
            f"{now:.3f}",
            "" if trip_for is None else f"{trip_for:.3f}",
            policy.window,
            policy.allowed_fails,
            policy.cooldown_time,
            policy.forget_after,
        ]
        tripped = bool(await self._script(client, "fail")(keys=[self._cb(name)], args=args))
        self._drop(name)  # again: a read cached while the script ran is already stale
        return tripped

    async def forget(self, names: Sequence[str]) -> None:
        """Drop the breaker state of these deployments (tests, admin)."""
        for n in names:
            self._drop(n)
        if names:
            await self.client().delete(*(self._cb(n) for n in names))

    async def aclose(self) -> None:
        """Close this loop's client (an injected client is left to its owner)."""
        if self._client is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        c = self._clients.pop(loop, None)
        if c is not None:
            await c.aclose()
