"""RedisBudgetStore specifics: key layout, one round trip per operation, idempotent writes, TTLs,
an unreachable Redis (fail closed / fail open) and replay of settles once it is back."""

from __future__ import annotations

import logging
import pickle
import time
from decimal import Decimal
from typing import Any

import pytest
import redis

from llm_connect.budget import BudgetTracker, BudgetWarning, LLMBudgetExceededError, RedisBudgetStore
from llm_connect.budget.stores import LEASE

from .conftest import REDIS_URL, TcpProxy, fresh_namespace, needs_redis

pytestmark = needs_redis


class CountingRedis(redis.Redis):
    """A real redis-py client that counts the commands it sends (one per round trip, no pipelines here)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.commands: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)


@pytest.fixture
def counting_store():
    client = CountingRedis.from_url(REDIS_URL)
    store = RedisBudgetStore(REDIS_URL, namespace=fresh_namespace(), client=client)
    yield store, client
    store.drop_namespace()
    store.close()


def test_one_round_trip_per_reserve_and_settle_over_a_chain(counting_store) -> None:
    store, client = counting_store
    root = BudgetTracker(total=10_000, total_usd=Decimal(5), store=store, budget_id="root")
    leaf = root.child(5000, budget_id="mid").child(1000, budget_id="leaf")
    res = leaf.reserve(10, Decimal("0.01"))  # loads the scripts on first use
    res.settle(5, Decimal("0.005"))
    client.commands.clear()
    res = leaf.reserve(100, Decimal("0.1"))
    assert client.commands == ["EVALSHA"]
    res.settle(80, Decimal("0.08"))
    assert client.commands == ["EVALSHA", "EVALSHA"]
    leaf.reserve(1, Decimal("0.001")).release()
    leaf.consume(1, Decimal("0.001"))
    assert client.commands == ["EVALSHA"] * 5
    assert root.spent == 86


def test_namespaced_keys_and_period_ttl(redis_store: RedisBudgetStore) -> None:
    t = BudgetTracker(total=100, store=redis_store, budget_id="tenant-a", period="daily")
    res = t.reserve(10)
    r = redis.Redis.from_url(REDIS_URL)
    keys = sorted(k.decode() for k in r.scan_iter(match=f"{redis_store.namespace}:*"))
    day = time.strftime("%Y-%m-%d", time.gmtime())
    base = f"{redis_store.namespace}:budget:tenant-a:{day}"
    assert keys == [base, base + ":leases"]
    ttl = r.ttl(base)
    assert 31 * 86400 < ttl <= 32 * 86400  # end of today + a month of retention
    res.settle(10, None)
    assert r.hgetall(base)[b"s"] == b"10"
    lifelong = BudgetTracker(total=100, store=redis_store, budget_id="forever")
    lifelong.consume(1)
    assert r.ttl(f"{redis_store.namespace}:budget:forever:all") == -1
    r.close()


def test_writes_are_idempotent_when_a_call_is_retried(redis_store: RedisBudgetStore) -> None:
    t = BudgetTracker(total=1000, store=redis_store)
    now = time.time()
    levels = t._levels(now)
    assert redis_store.reserve(levels, "r1", 100, 0, now, now + 60) is None
    assert redis_store.reserve(levels, "r1", 100, 0, now, now + 60) is None  # a retry after a lost reply
    assert t.reserved == 100
    first = redis_store.settle(levels, "r1", 100, 0, 70, 0, now, LEASE)
    again = redis_store.settle(levels, "r1", 100, 0, 70, 0, now, LEASE)
    assert (first.charged, first.duplicate, again.duplicate) == (70, False, True)
    assert (t.spent, t.reserved) == (70, 0)


def test_thresholds_fire_once_across_store_instances(redis_store_factory) -> None:
    a = BudgetTracker(total=100, store=redis_store_factory(), budget_id="shared")
    b = BudgetTracker(total=100, store=redis_store_factory(), budget_id="shared")
    assert [w.threshold for w in a.consume(80)] == [0.75]
    assert b.consume(5) == []  # already fired through the other instance
    assert [w.threshold for w in b.consume(10)] == [0.9, 0.95]
    assert a.consume(5) == [] and a.spent == b.spent == 100


def test_store_pickles_by_settings(redis_store: RedisBudgetStore) -> None:
    clone = pickle.loads(pickle.dumps(redis_store))
    assert (clone.url, clone.namespace) == (redis_store.url, redis_store.namespace)
    BudgetTracker(total=10, store=redis_store, budget_id="p").consume(3)
    assert BudgetTracker(total=10, store=clone, budget_id="p").spent == 3
    clone.close()


def test_unreachable_redis_fails_closed_by_default() -> None:
    store = RedisBudgetStore("redis://127.0.0.1:1/0", namespace="nowhere")
    t = BudgetTracker(total=100, store=store)
    start = time.perf_counter()
    with pytest.raises(LLMBudgetExceededError, match="budget store unreachable") as ei:
        t.reserve(10)
    assert time.perf_counter() - start < 1.0 and ei.value.budget_id == t.budget_id
    with pytest.raises(LLMBudgetExceededError, match="budget store unreachable"):
        t.max_output_tokens(10)
    with pytest.raises(LLMBudgetExceededError, match="budget store unreachable"):
        t.consume(1)


async def test_unreachable_redis_fails_closed_async() -> None:
    store = RedisBudgetStore("redis://127.0.0.1:1/0", namespace="nowhere")
    t = BudgetTracker(total=100, store=store)
    with pytest.raises(LLMBudgetExceededError, match="budget store unreachable"):
        await t.areserve(10)
    await store.aclose()


def test_fail_open_lets_calls_through_and_replays_the_spend(
    redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisBudgetStore(redis_proxy.url, namespace=fresh_namespace())
    try:
        t = BudgetTracker(total=1000, store=store, budget_id="fo", on_unavailable="fail_open", thresholds=(0.5,))
        seen: list[BudgetWarning] = []
        t.subscribe(seen.append)
        held = t.reserve(300)  # reserved while Redis is up
        redis_proxy.cut()
        with caplog.at_level(logging.WARNING, logger="llm_connect.budget"):
            blind = t.reserve(400)  # let through: fail open
            assert t.max_output_tokens(10) is None  # no cap known
            assert blind.settle(400, None) == []  # queued, not lost
            assert held.settle(250, None) == []
            t.record(10)
        assert "failing open" in caplog.text and "queued for replay" in caplog.text
        assert store.pending == 3
        redis_proxy.restore()
        assert t.spent == 660  # the next call replays the queue first
        assert store.pending == 0 and t.reserved == 0
        assert [w.threshold for w in seen] == [0.5]  # delivered on replay
    finally:
        store.drop_namespace()
        store.close()


async def test_async_settle_is_queued_and_replayed(redis_proxy: TcpProxy) -> None:
    store = RedisBudgetStore(redis_proxy.url, namespace=fresh_namespace())
    try:
        t = BudgetTracker(total=1000, store=store)
        res = await t.areserve(100)
        redis_proxy.cut()
        await res.asettle(90, None)
        assert store.pending == 1
        with pytest.raises(LLMBudgetExceededError, match="unreachable"):
            await t.areserve(10)  # fail closed
        redis_proxy.restore()
        st = await t.astate()
        assert (st.spent, st.reserved, store.pending) == (90, 0, 0)
    finally:
        store.drop_namespace()
        await store.aclose()


async def test_async_clients_are_per_event_loop(redis_store: RedisBudgetStore) -> None:
    t = BudgetTracker(total=100, store=redis_store, budget_id="loops")
    await t.aconsume(1)

    def other_loop() -> int:
        import asyncio

        async def go() -> int:
            await t.aconsume(2)
            return (await t.astate()).spent

        return asyncio.run(go())

    import asyncio

    assert await asyncio.to_thread(other_loop) == 3
    await t.aconsume(3)
    assert (await t.astate()).spent == 6


def test_large_usd_amounts_stay_exact(redis_store: RedisBudgetStore) -> None:
    t = BudgetTracker(total_usd=Decimal("5000000"), store=redis_store)
    t.consume(1, Decimal("4999999.999999999"))
    assert t.spent_usd == Decimal("4999999.999999999")
    assert t.remaining_usd() == Decimal("0.000000001")


def test_reservations_made_after_a_fork_never_share_an_id(redis_store: RedisBudgetStore, in_fork) -> None:
    """A tracker built before a prefork server forks its workers: each worker's reservations hold their own room."""
    tracker = BudgetTracker(total=1000, store=redis_store, budget_id="forked")
    child_id = in_fork(lambda: tracker.reserve(600).id)  # the child's reservation stays open
    assert child_id
    with pytest.raises(LLMBudgetExceededError):  # the child's 600 are held: 600 more do not fit
        tracker.reserve(600)
    mine = tracker.reserve(400)
    assert mine.id != child_id and tracker.state().reserved == 1000
