"""Shared router state: the same contract in memory and in real Redis; several routers (replicas) agree."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from llm_connect import FakeAdapter
from llm_connect.routing import CooldownPolicy, Deployment, MemoryRouterState, RedisRouterState, Router, RouterState
from llm_connect.testing import MockReply, MockServer

from .conftest import REDIS_URL, dep, hits, wait_for_fresh_minute

POLICY = CooldownPolicy(allowed_fails=2, window=5, cooldown_time=0.3, probe_timeout=0.5)


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[RouterState]:
    if request.param == "memory":
        yield MemoryRouterState()
        return
    ns = request.getfixturevalue("redis_namespace")
    s = RedisRouterState(REDIS_URL, namespace=ns)
    yield s
    await s.aclose()


async def test_state_contract_breaker(state: RouterState) -> None:
    now = time.time()
    assert isinstance(state, RouterState)
    (st,) = await state.snapshot(["d"], now)
    assert st.blocked_until(now, 0, None, None) == 0 and not st.half_open(now)
    assert await state.record_failure("d", now, POLICY, trip_for=None) is False
    assert await state.record_failure("d", now, POLICY, trip_for=None) is True  # second failure trips
    (st,) = await state.snapshot(["d"], now)
    assert st.tripped and st.blocked_until(now, 0, None, None) == pytest.approx(now + 0.3, abs=0.01)
    later = now + 0.31
    (st,) = await state.snapshot(["d"], later)
    assert st.half_open(later) and not st.blocked_until(later, 0, None, None)
    assert await state.claim_probe("d", later, POLICY) is True
    assert await state.claim_probe("d", later, POLICY) is False  # one probe at a time
    (st,) = await state.snapshot(["d"], later)
    assert st.blocked_until(later, 0, None, None) > later  # others see the probe in flight
    await state.record_success("d", later, requests=1, tokens=10, probe=True)
    (st,) = await state.snapshot(["d"], later)
    assert not st.tripped and not st.blocked_until(later, 0, None, None)


async def test_state_contract_failed_probe_and_rate_limit(state: RouterState) -> None:
    now = time.time()
    assert await state.record_failure("d", now, POLICY, trip_for=2.0) is True  # a 429 trips at once
    (st,) = await state.snapshot(["d"], now)
    assert st.until == pytest.approx(now + 2.0, abs=0.01)
    later = now + 2.01
    assert await state.claim_probe("d", later, POLICY)
    assert await state.record_failure("d", later, POLICY, trip_for=None) is True  # a failed probe re-opens
    (st,) = await state.snapshot(["d"], later)
    assert st.until == pytest.approx(later + 0.3, abs=0.01)
    # a success that was no probe does not cut the cooldown short
    await state.record_success("d", later, reset=True)
    (st,) = await state.snapshot(["d"], later)
    assert st.until > later


async def test_state_contract_counters_and_success_resets_failures(state: RouterState) -> None:
    wait_for_fresh_minute()
    now = time.time()
    minute = int(now // 60)
    await state.record_start("d", now)
    await state.record_success("d", now, tokens=120)
    await state.record_success("d", now, requests=1, tokens=30)
    (st, other) = await state.snapshot(["d", "other"], now, counted=["d", "other"])
    assert (st.rpm_used(minute), st.tpm_used(minute)) == (2, 150)
    assert (other.rpm_used(minute), other.tpm_used(minute)) == (0, 0)
    assert st.blocked_until(now, minute, 2, None) == (minute + 1) * 60
    assert st.blocked_until(now, minute, None, 151) == 0
    assert st.rpm_used(minute + 1) == 0
    # failures separated by a success do not add up
    assert await state.record_failure("d", now, POLICY, trip_for=None) is False
    (st,) = await state.snapshot(["d"], now)
    assert st.fails == 1
    await state.record_success("d", now, reset=True)
    assert await state.record_failure("d", now, POLICY, trip_for=None) is False
    # ... while failures within the window do
    assert await state.record_failure("d", now + 1, POLICY, trip_for=None) is True


async def test_state_contract_unprobed_trip_is_forgotten(state: RouterState) -> None:
    policy = CooldownPolicy(allowed_fails=1, cooldown_time=0.2, forget_after=0.3)
    t = time.time()
    assert await state.record_failure("d", t, policy, trip_for=None) is True
    (st,) = await state.snapshot(["d"], t + 0.25)
    assert st.half_open(t + 0.25)
    await asyncio.sleep(0.55)  # Redis expires the key by its own clock
    now = time.time()
    (st,) = await state.snapshot(["d"], now)
    assert not st.half_open(now) and not st.blocked_until(now, 0, None, None)


async def test_state_contract_failure_window(state: RouterState) -> None:
    now = time.time()
    assert await state.record_failure("d", now, POLICY, trip_for=None) is False
    # the window (5 s) is over: counting starts again
    assert await state.record_failure("d", now + 6, POLICY, trip_for=None) is False
    assert await state.record_failure("d", now + 6.5, POLICY, trip_for=None) is True


async def test_two_routers_share_a_retry_after_cooldown_through_redis(mock: MockServer, redis_namespace: str) -> None:
    mock.script(MockReply(model="a", error="rate_limit", retry_after=2))
    s1 = RedisRouterState(REDIS_URL, namespace=redis_namespace)
    s2 = RedisRouterState(REDIS_URL, namespace=redis_namespace)
    replica1 = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered", state=s1)
    replica2 = Router({"g": [dep(mock, "a"), dep(mock, "b")]}, strategy="ordered", state=s2)
    t0 = time.monotonic()
    assert (await replica1.async_execute_prompt("x")).model == "b"
    for _ in range(5):
        assert (await replica2.async_execute_prompt("y")).model == "b"
    assert hits(mock, "a") == 1, "replica 2 never called the cooling deployment"
    rows = {r["name"]: r for r in (await replica2.ahealth())["g"]}
    assert rows["a"]["available"] is False and 0 < rows["a"]["cooldown_remaining"] <= 2
    await asyncio.sleep(max(0.0, 2.05 - (time.monotonic() - t0)))
    assert (await replica2.async_execute_prompt("back")).model == "a"
    assert (await replica1.async_execute_prompt("back")).model == "a"
    await s1.aclose()
    await s2.aclose()


async def test_replicas_add_up_failures_toward_the_breaker(redis_namespace: str) -> None:
    from llm_connect import FakeReply, LLMProviderUnavailableError

    def replica(*replies: FakeReply) -> tuple[Router, FakeAdapter]:
        a = FakeAdapter("a", replies=replies)
        state = RedisRouterState(REDIS_URL, namespace=redis_namespace)
        group = [Deployment(adapter=a, name="a"), Deployment(adapter=FakeAdapter("b"), name="b")]
        return Router({"g": group}, strategy="ordered", num_retries=0, state=state, cooldown=POLICY), a

    down = FakeReply(error=LLMProviderUnavailableError("down"))
    r1, _ = replica(down)
    r2, _ = replica(down)
    r3, a3 = replica()
    assert (await r1.async_execute_prompt("x")).model == "b"  # 1 failure: still closed
    assert (await r2.async_execute_prompt("x")).model == "b"  # 2nd failure, other replica: open
    assert (await r3.async_execute_prompt("x")).model == "b"
    assert len(a3.calls) == 0


async def test_rpm_cap_is_shared_between_replicas(redis_namespace: str) -> None:
    wait_for_fresh_minute()

    def replica() -> Router:
        group = [Deployment(adapter=FakeAdapter("a"), name="a", rpm=3), Deployment(adapter=FakeAdapter("b"), name="b")]
        state = RedisRouterState(REDIS_URL, namespace=redis_namespace)
        return Router({"g": group}, strategy="ordered", state=state)

    r1, r2 = replica(), replica()
    served = []
    for _ in range(3):
        served.append((await r1.async_execute_prompt("x")).model)
        served.append((await r2.async_execute_prompt("x")).model)
    assert served == ["a", "a", "a", "b", "b", "b"]


async def test_from_config_with_redis_url(redis_namespace: str) -> None:
    router = Router.from_config(
        {"groups": {"g": ["fake:a"]}, "redis_url": REDIS_URL, "redis_namespace": redis_namespace}
    )
    assert isinstance(router.state, RedisRouterState) and router.state.namespace == redis_namespace
    assert (await router.async_execute_prompt("hi")).text == "echo: hi"
    await router.aclose()
