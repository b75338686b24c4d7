"""The Redis rate limiter and router state without a round trip per request: big limits admit from blocks
taken from Redis (several limiters together never pass the limit), small ones stay exact, tokens are added
in batches; router breaker reads are cached and a replica's own changes drop the cache."""

from __future__ import annotations

import asyncio
import time

import pytest

from llm_connect.routing import CooldownPolicy, RedisRouterState
from llm_connect.server.auth import LimitScope
from llm_connect.server.errors import ApiError
from llm_connect.server.limits import RedisRateLimiter

from .conftest import REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = (int(time.time()) // 60) * 60 + 5.0  # early in a minute: no window rolls over mid-test

    def __call__(self) -> float:
        return self.now


async def _admit(limiter: RedisRateLimiter, scope: LimitScope, n: int) -> int:
    ok = 0

    async def one() -> None:
        nonlocal ok
        try:
            await limiter.acquire([scope])
            ok += 1
        except ApiError as exc:
            assert exc.status == 429 and exc.code == "rate_limit_exceeded"

    await asyncio.gather(*(one() for _ in range(n)))
    return ok


async def test_blocks_never_pass_the_limit_across_limiters(redis_ns: str) -> None:
    clock = Clock()
    a, b = RedisRateLimiter(REDIS_URL, redis_ns, clock), RedisRateLimiter(REDIS_URL, redis_ns, clock)
    scope = LimitScope("tenant:t", 1000, None)
    assert a.batched(scope)
    admitted = sum(await asyncio.gather(_admit(a, scope, 900), _admit(b, scope, 900)))
    # never more than the limit; at most one unused block (rpm // 50) per limiter short of it
    assert 1000 - 2 * 20 <= admitted <= 1000
    assert a.round_trips + b.round_trips <= 2 * (1000 // 20) + 20  # one per block, not one per request
    await a.aclose()
    await b.aclose()


async def test_small_limits_stay_exact(redis_ns: str) -> None:
    clock = Clock()
    a, b = RedisRateLimiter(REDIS_URL, redis_ns, clock), RedisRateLimiter(REDIS_URL, redis_ns, clock)
    scope = LimitScope("key:k", 30, None)
    assert not a.batched(scope)
    admitted = sum(await asyncio.gather(_admit(a, scope, 40), _admit(b, scope, 40)))
    assert admitted == 30
    await a.aclose()
    await b.aclose()


async def test_tokens_are_added_in_batches_and_seen_by_others(redis_ns: str) -> None:
    clock = Clock()
    a = RedisRateLimiter(REDIS_URL, redis_ns, clock, flush_interval=0.01, max_age=0.0)
    b = RedisRateLimiter(REDIS_URL, redis_ns, clock, max_age=0.0)
    scope = LimitScope("tenant:tok", None, 50_000)
    trips = a.round_trips
    for _ in range(10):
        await a.add_tokens([scope], 6_000)
    assert a.round_trips == trips  # nothing sent yet: one flush later for all ten
    await asyncio.sleep(0.1)
    assert a.round_trips == trips + 1
    with pytest.raises(ApiError) as info:
        await b.acquire([scope])  # the other limiter reads the 60 000 tokens: over the tpm
    assert info.value.code == "rate_limit_exceeded"
    await a.aclose()
    await b.aclose()


async def test_router_reads_are_cached_and_own_changes_drop_them(redis_ns: str) -> None:
    s1 = RedisRouterState(REDIS_URL, namespace=redis_ns, cache_seconds=30)
    s2 = RedisRouterState(REDIS_URL, namespace=redis_ns)
    policy = CooldownPolicy(allowed_fails=1, cooldown_time=5)
    now = time.time()
    assert (await s1.snapshot(["d"], now))[0].until == 0  # read and cached
    assert await s2.record_failure("d", now, policy, trip_for=None)  # another replica trips it
    assert (await s1.snapshot(["d"], now))[0].until == 0  # s1 still answers from its cache
    assert (await s2.snapshot(["d"], now))[0].until > now  # uncached: sees it at once
    await s1.record_failure("d", now, policy, trip_for=None)  # s1's own change drops its cache
    assert (await s1.snapshot(["d"], now))[0].until > now
    await s1.aclose()
    await s2.aclose()


async def test_calls_finding_the_router_read_expired_share_one_mget(redis_ns: str) -> None:
    """Many calls in flight when the cached read expires wait for one MGET, not one each; a replica's own
    change made while a read is in flight is not hidden by that read."""
    import redis.asyncio as aredis

    class Counting(aredis.Redis):
        mgets = 0

        async def mget(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            Counting.mgets += 1
            return await super().mget(*args, **kwargs)

    client = Counting.from_url(REDIS_URL)
    s = RedisRouterState(client=client, namespace=redis_ns, cache_seconds=30)
    now = time.time()
    got = await asyncio.gather(*[s.snapshot(["d", "e"], now) for _ in range(50)])
    assert Counting.mgets == 1
    assert all(g[0].until == 0 and g[1].until == 0 for g in got)
    policy = CooldownPolicy(allowed_fails=1, cooldown_time=5)
    await s.forget(["d", "e"])  # drops the cache: the next call reads again
    reading = asyncio.ensure_future(s.snapshot(["d", "e"], now))
    await asyncio.sleep(0)  # the read is in flight
    await s.record_failure("d", now, policy, trip_for=None)
    await reading
    assert (await s.snapshot(["d", "e"], now))[0].until > now  # not the read from before the trip
    await client.aclose()
