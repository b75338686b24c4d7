"""Cancelling a caller in the middle of a store call neither loses spend nor holds budget (Redis store)."""

from __future__ import annotations

import asyncio
import random

import pytest

from llm_connect.budget import BudgetTracker, RedisBudgetStore

from .conftest import REDIS_URL, fresh_namespace, needs_redis

pytestmark = needs_redis


@pytest.fixture
async def store():
    s = RedisBudgetStore(REDIS_URL, namespace=fresh_namespace(), max_connections=4)
    yield s
    s.drop_namespace()
    await s.aclose()


async def test_cancelled_settles_still_land(store):
    t = BudgetTracker(10**9, store=store, budget_id="b")
    reservations = [await t.areserve(100) for _ in range(300)]
    tasks = [asyncio.ensure_future(r.asettle(60)) for r in reservations]
    await asyncio.sleep(0)
    rng = random.Random(0)
    for task in tasks:
        if rng.random() < 0.5:
            task.cancel()
    out = await asyncio.gather(*tasks, return_exceptions=True)
    assert any(isinstance(o, asyncio.CancelledError) for o in out)
    await asyncio.sleep(0.3)  # the shielded store calls finish
    state = await t.astate()
    assert (state.spent, state.reserved) == (300 * 60, 0)


async def test_cancelled_reserves_do_not_hold_budget(store):
    t = BudgetTracker(10**6, store=store, budget_id="b")
    rng = random.Random(1)
    loop = asyncio.get_running_loop()
    for _ in range(10):
        tasks = [asyncio.ensure_future(t.areserve(100)) for _ in range(50)]
        for task in tasks:
            loop.call_later(rng.random() * 0.003, task.cancel)
        for o in await asyncio.gather(*tasks, return_exceptions=True):
            if not isinstance(o, BaseException):
                await o.arelease()
    # a cancelled reserve is released by a call already in flight to the store: wait for those to land
    # (bounded; a loaded machine takes longer than an idle one)
    deadline = loop.time() + 15
    state = await t.astate()
    while (state.spent, state.reserved) != (0, 0) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        state = await t.astate()
    assert (state.spent, state.reserved) == (0, 0)


def test_cleanup_with_a_call_in_flight_loses_no_spend(store):
    from llm_connect.budget import ThreadBudgetRegistry

    tenant = BudgetTracker(10_000, store=store, budget_id="tenant")
    registry = ThreadBudgetRegistry(1_000, parent=tenant)
    res = registry.tracker("t1").reserve(500)  # a call starts on the thread
    registry.cleanup_thread("t1")  # the conversation ends while it runs
    res.settle(300)  # the call lands
    state = tenant.state()
    assert (state.spent, state.reserved) == (300, 0)
    assert registry.cleanup_thread("t1") is not None  # now it can be cleaned up for good
