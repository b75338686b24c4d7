"""LeasedBudgetStore: replicas spend big budgets from slices leased from Redis, and the global cap is never
crossed — under a hypothesis state machine with leases expiring and replicas dying, and with 2 processes
x 1 000 concurrent calls on one Redis budget."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import random
import time
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from llm_connect.budget import BudgetTracker, LLMBudgetExceededError, RedisBudgetStore
from llm_connect.budget.leases import LeasedBudgetStore

from .conftest import REDIS_URL, Clock, _redis_up, fresh_namespace

pytestmark = pytest.mark.skipif(not _redis_up(), reason="needs Redis at 127.0.0.1:6379")

BIG = 200_000
LEASE = 30.0


def leased(ns: str, clock=time.time, **kw) -> LeasedBudgetStore:
    opts = {"min_tokens": 100_000, "fraction": 0.1, "lease_seconds": LEASE, "clock": clock, **kw}
    return LeasedBudgetStore(RedisBudgetStore(REDIS_URL, namespace=ns), **opts)


def redis_state(ns: str, budget_id: str, total: int, usd: str | None = None):
    store = RedisBudgetStore(REDIS_URL, namespace=ns)
    try:
        return BudgetTracker(total, total_usd=usd, store=store, budget_id=budget_id).state()
    finally:
        store.close()


@pytest.fixture
def ns():
    name = fresh_namespace()
    yield name
    RedisBudgetStore(REDIS_URL, namespace=name).drop_namespace()


def test_big_levels_are_leased_small_ones_reserved_directly(ns):
    store = leased(ns)
    big = BudgetTracker(BIG, store=store, budget_id="big")
    small = big.child(5_000, budget_id="small")
    assert store.leased(big._level(time.time())) and not store.leased(small._level(time.time()))
    big.reserve(100).settle(40)  # no slice yet: reserved directly, a slice is asked for
    store.flush()
    syncs = store.syncs
    for _ in range(50):
        big.reserve(100).settle(40)  # from the slice: no round trip
    assert store.syncs == syncs
    assert redis_state(ns, "big", BIG).reserved == BIG // 10  # the slice, as Redis sees it
    small.reserve(300).settle(200)  # the small level in Redis, the big one from the slice
    assert redis_state(ns, "small", 5_000).spent == 200
    assert big.state().spent == 51 * 40 + 200  # Redis + what this replica has not flushed yet
    store.close()  # flushes and hands the slice back
    state = redis_state(ns, "big", BIG)
    assert state.spent == 51 * 40 + 200 and state.reserved == 0 and state.overrun == 0


async def test_async_spend_is_flushed_in_the_background_and_returned_on_close(ns):
    store = leased(ns, flush_interval=0.01)
    t = BudgetTracker(BIG, total_usd="1000", store=store, budget_id="big")  # $1000 >= min_usd: leased too
    for _ in range(200):
        r = await t.areserve(50, Decimal("0.01"))
        await r.asettle(30, Decimal("0.005"))
    await asyncio.sleep(0.1)
    state = redis_state(ns, "big", BIG, "1000")
    assert state.spent == 6000 and state.spent_usd == Decimal("1")
    assert store.syncs < 20  # a few flushes, not one per call
    await store.aclose()
    assert redis_state(ns, "big", BIG, "1000").reserved == 0


def test_a_dead_replicas_slice_expires_and_the_room_comes_back(ns):
    clock = Clock()
    a, b = leased(ns, clock, fraction=0.5), leased(ns, clock, fraction=0.5)
    ta = BudgetTracker(BIG, store=a, budget_id="big", clock=clock)
    tb = BudgetTracker(BIG, store=b, budget_id="big", clock=clock)
    ta.reserve(10).settle(10)
    a.flush()  # a holds half the budget
    tb.reserve(10).settle(10)
    b.flush()  # b gets half of what is left
    with pytest.raises(LLMBudgetExceededError):
        tb.reserve(BIG // 2)  # a's slice is not b's to use
    del a, ta  # a dies without flushing or returning
    clock.advance(LEASE + 1)
    b.flush()
    tb.reserve(BIG // 2).settle(BIG // 2)  # a's slice expired: its room is back
    b.close()
    state = redis_state(ns, "big", BIG)
    assert state.spent <= BIG and state.reserved == 0


def test_thresholds_fire_once_across_replicas(ns):
    a, b = leased(ns), leased(ns)
    fired = []
    trackers = []
    for s in (a, b):
        t = BudgetTracker(BIG, store=s, budget_id="big", thresholds=(0.5, 0.9))
        t.subscribe(lambda w: fired.append(w.threshold))
        trackers.append(t)
    for i in range(190):
        trackers[i % 2].reserve(1_000).settle(1_000)
        if i % 10 == 0:
            a.flush()
            b.flush()
    a.close()
    b.close()
    assert sorted(fired) == [0.5, 0.9]


def test_unreachable_redis_fails_closed_once_the_slice_is_stale(redis_proxy):
    from .conftest import TcpProxy

    assert isinstance(redis_proxy, TcpProxy)
    ns = fresh_namespace()
    clock = Clock()
    store = LeasedBudgetStore(
        RedisBudgetStore(redis_proxy.url, namespace=ns, socket_timeout=0.5),
        min_tokens=100_000,
        lease_seconds=LEASE,
        clock=clock,
    )
    t = BudgetTracker(BIG, store=store, budget_id="big", clock=clock)
    t.reserve(10).settle(10)
    store.flush()
    redis_proxy.cut()
    t.reserve(100).settle(100)  # the slice is still valid: spent in process
    clock.advance(LEASE)
    with pytest.raises(LLMBudgetExceededError, match="unreachable"):
        t.reserve(100)  # the slice is stale and Redis cannot be reached: refused
    redis_proxy.restore()
    store.flush()  # the kept spend lands (its slice had expired: charged as it fits)
    store.close()
    assert redis_state(ns, "big", BIG).spent == 110
    RedisBudgetStore(REDIS_URL, namespace=ns).drop_namespace()


def test_pickles_with_its_settings(ns):
    store = leased(ns, fraction=0.2)
    copy = pickle.loads(pickle.dumps(store))
    assert isinstance(copy, LeasedBudgetStore) and copy.fraction == 0.2 and copy.redis.namespace == ns
    copy.close()
    store.close()


# -- a state machine: replicas reserving, settling, flushing, dying; leases expiring ---------------------------
class Replicas(RuleBasedStateMachine):
    """Three replicas on one Redis namespace, a big (leased) budget with a small (direct) child."""

    @initialize()
    def start(self) -> None:
        self.ns = fresh_namespace()
        self.clock = Clock()
        self.stores: list[LeasedBudgetStore | None] = []
        self.trackers: list[tuple[BudgetTracker, BudgetTracker] | None] = []
        for _ in range(3):
            self._spawn()
        self.open: list[tuple[int, object, int]] = []  # (replica, reservation, worst case)
        self.settled = 0  # tokens settled by replicas alive at the end (or flushed before they died)
        self.lost = 0  # spend of replicas that died before flushing it

    def _spawn(self) -> None:
        store = leased(self.ns, self.clock, flush_interval=3600)
        big = BudgetTracker(BIG, store=store, budget_id="big", clock=self.clock)
        self.stores.append(store)
        self.trackers.append((big, big.child(20_000, budget_id="small")))

    def alive(self) -> list[int]:
        return [i for i, s in enumerate(self.stores) if s is not None]

    @rule(k=st.integers(0, 10**6), tokens=st.integers(0, 15_000), small=st.booleans())
    def reserve(self, k: int, tokens: int, small: bool) -> None:
        i = self.alive()[k % len(self.alive())]
        tracker = self.trackers[i][1 if small else 0]  # type: ignore[index]
        try:
            res = tracker.reserve(tokens)
        except LLMBudgetExceededError:
            return
        self.open.append((i, res, tokens))

    @precondition(lambda self: self.open)
    @rule(k=st.integers(0, 10**6), frac=st.floats(0, 1), release=st.booleans())
    def finish(self, k: int, frac: float, release: bool) -> None:
        _, res, worst = self.open.pop(k % len(self.open))
        if release:
            res.release()  # type: ignore[attr-defined]
            return
        actual = int(worst * frac)
        res.settle(actual)  # type: ignore[attr-defined]
        self.settled += actual

    @rule(k=st.integers(0, 10**6))
    def flush(self, k: int) -> None:
        i = self.alive()[k % len(self.alive())]
        self.stores[i].flush()  # type: ignore[union-attr]

    @precondition(lambda self: len(self.alive()) > 1)
    @rule(k=st.integers(0, 10**6))
    def die(self, k: int) -> None:
        """A replica is killed: its open calls and unflushed spend are gone, its slices stay until they expire."""
        i = self.alive()[k % len(self.alive())]
        store = self.stores[i]
        assert store is not None
        unflushed = sum(s.spent_t for s in store._slices.values() if s.level.budget_id == "big")
        self.lost += unflushed
        self.settled -= unflushed
        self.open = [o for o in self.open if o[0] != i]
        store.redis.close()
        self.stores[i] = None
        self.trackers[i] = None
        self._spawn()

    @rule(seconds=st.sampled_from([1.0, LEASE / 2, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        """Live replicas renew their slices as time goes by (their background task does); dead ones do not,
        so a dead replica's slices expire."""
        while seconds > 0:
            step = min(seconds, LEASE / 4)
            for s in self.stores:
                if s is not None:
                    s.flush()
            self.clock.advance(step)
            seconds -= step

    def _real_spend(self) -> int:
        """Redis's spent on the big budget plus every live replica's unflushed spend and open holds."""
        state = redis_state(self.ns, "big", BIG)
        local = 0
        for s in self.stores:
            if s is not None:
                sl = s._slices.get("big:all")
                if sl is not None:
                    local += sl.spent_t + sl.flushing[0]
        return state.spent + local

    @invariant()
    def never_past_the_cap(self) -> None:
        if not hasattr(self, "ns"):
            return
        state = redis_state(self.ns, "big", BIG)
        assert 0 <= state.spent <= BIG and state.reserved >= 0
        assert state.spent + state.reserved <= BIG
        held = sum(o[2] for o in self.open)
        assert self._real_spend() + held <= BIG + self.lost
        small = redis_state(self.ns, "small", 20_000)
        assert small.spent + small.reserved <= 20_000

    def teardown(self) -> None:
        if not hasattr(self, "ns"):
            return
        for _, res, _ in self.open:
            res.release()  # type: ignore[attr-defined]
        for s in self.stores:
            if s is not None:
                s.close()
        self.clock.advance(LEASE + 1)
        state = redis_state(self.ns, "big", BIG)
        # every token settled by a replica that lived (or flushed before it died) is in Redis, none twice
        assert state.spent + state.overrun == self.settled
        assert state.spent <= BIG
        RedisBudgetStore(REDIS_URL, namespace=self.ns).drop_namespace()


Replicas.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)
test_replicas_state_machine = Replicas.TestCase


# -- 2 processes x 1 000 concurrent calls on one budget ---------------------------------------------------------
def _process(ns: str, total: int, seed: int, start_at: float) -> tuple[int, int, int]:
    """1 000 concurrent calls on one loop: (tokens charged, calls admitted, calls refused)."""

    async def main() -> tuple[int, int, int]:
        store = LeasedBudgetStore(
            RedisBudgetStore(REDIS_URL, namespace=ns), min_tokens=10_000, fraction=0.05, flush_interval=0.01
        )
        tracker = BudgetTracker(total, store=store, budget_id="shared")
        rng = random.Random(seed)
        charged = admitted = refused = 0

        async def call() -> None:
            nonlocal charged, admitted, refused
            worst = rng.randint(10, 200)
            actual = rng.randint(0, worst)
            for _ in range(3):
                try:
                    res = await tracker.areserve(worst)
                except LLMBudgetExceededError:
                    refused += 1
                    await asyncio.sleep(0.005)
                    continue
                await asyncio.sleep(rng.random() * 0.01)
                await res.asettle(actual)
                charged += actual
                admitted += 1
                return

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(call() for _ in range(1000)))
        await store.aclose()
        return charged, admitted, refused

    return asyncio.run(main())


def test_two_processes_1000_concurrent_calls_never_overshoot(ns):
    total = 40_000  # the 2 000 calls want ~100 000
    start_at = time.time() + 1.5
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(pool.map(_process, [ns, ns], [total, total], [1, 2], [start_at, start_at]))
    charged = sum(r[0] for r in results)
    state = redis_state(ns, "shared", total)
    assert state.spent == charged <= total  # overshoot 0, and every charged token is in Redis exactly once
    assert state.reserved == 0 and state.overrun == 0
    assert all(r[1] > 0 for r in results) and sum(r[2] for r in results) > 0
    assert charged >= 0.5 * total
