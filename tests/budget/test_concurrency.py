"""Races: 500 threads, 500 coroutines and 4 processes on one budget. Whatever the interleaving, the final
spend never passes the cap, equals the sum of what each settle was charged (with the rest of the actual
usage in ``overrun``), nothing stays reserved, and each threshold fires exactly once."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pytest

from llm_connect.budget import BudgetStore, BudgetTracker, BudgetWarning, LLMBudgetExceededError

from ._workers import Tally, one_acall, one_call, process_worker
from .conftest import REDIS_URL, needs_redis

THRESHOLDS = [("tokens", 0.75), ("tokens", 0.9), ("tokens", 0.95)]


def _crossed(tracker: BudgetTracker, total: int) -> list[tuple[str, float]]:
    """The thresholds the final spend is past: each must have fired exactly once."""
    spent = tracker.spent
    assert spent >= 0.75 * total  # the workload is sized to cross them
    return [(u, t) for u, t in THRESHOLDS if spent >= t * total]


def _check(tracker: BudgetTracker, tally: Tally, total: int) -> None:
    st = tracker.state()
    assert st.spent <= total
    assert st.spent == tally.charged
    assert st.spent + st.overrun == tally.actual
    assert st.reserved == 0
    assert tally.refused > 0  # the race really hit the cap


def test_500_threads_race_one_tracker(store: BudgetStore) -> None:
    total = 40_000
    tracker = BudgetTracker(total=total, store=store)
    fired: list[tuple[str, float]] = []
    tracker.subscribe(lambda w: fired.append((w.unit, w.threshold)))
    barrier = threading.Barrier(500)
    tallies = [Tally() for _ in range(500)]

    def run(k: int) -> None:
        rng = random.Random(k)
        barrier.wait()
        for _ in range(8):
            one_call(tracker, rng, tallies[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(500)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    tally = Tally()
    for t in tallies:
        tally.add(t)
    _check(tracker, tally, total)
    assert sorted(fired) == _crossed(tracker, total)


async def test_500_coroutines_race_one_tracker(store: BudgetStore) -> None:
    total = 40_000
    tracker = BudgetTracker(total=total, store=store)
    fired: list[tuple[str, float]] = []
    tracker.subscribe(lambda w: fired.append((w.unit, w.threshold)))
    tallies = [Tally() for _ in range(500)]

    async def run(k: int) -> None:
        rng = random.Random(k)
        for _ in range(8):
            await one_acall(tracker, rng, tallies[k])

    await asyncio.gather(*(run(k) for k in range(500)))
    tally = Tally()
    for t in tallies:
        tally.add(t)
    _check(tracker, tally, total)
    assert sorted(fired) == _crossed(tracker, total)


def test_threads_through_a_delegation_chain_stop_exactly_at_the_root_cap(store: BudgetStore) -> None:
    a = BudgetTracker(total=4000, store=store, budget_id="A")
    b = a.child(total=3000, budget_id="B")
    c = b.child(budget_id="C")
    actors = [a, b, c]
    spent = [0] * 60
    barrier = threading.Barrier(60)

    def run(k: int) -> None:
        actor = actors[k % 3]
        barrier.wait()
        while True:
            step = 7
            try:
                actor.reserve(step).settle(step, None)
            except LLMBudgetExceededError:
                if actor.remaining() == 0:
                    return
                step = 1  # top up the last tokens one by one
                try:
                    actor.reserve(step).settle(step, None)
                except LLMBudgetExceededError:
                    continue
            spent[k] += step

    threads = [threading.Thread(target=run, args=(k,)) for k in range(60)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert a.spent == 4000 == sum(spent)  # A's cap reached, not one token more
    assert b.spent <= 3000 and c.spent <= b.spent
    assert a.reserved == b.reserved == c.reserved == 0


@needs_redis
def test_4_processes_race_one_redis_budget(redis_store_factory) -> None:
    store = redis_store_factory()  # fixes the namespace and cleans it up
    total = 40_000
    start_at = time.time() + 2.0
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
        futures = [pool.submit(process_worker, REDIS_URL, store.namespace, total, s, 60, start_at) for s in range(4)]
        results = [f.result(timeout=240) for f in futures]
    tally = Tally()
    for r in results:
        tally.add(r)
    tracker = BudgetTracker(total=total, store=store, budget_id="shared")
    _check(tracker, tally, total)
    # each threshold fired exactly once across all processes (and reached only one of them)
    crossed = _crossed(tracker, total)
    assert Counter(tally.warnings) == Counter(crossed)
    assert tracker.state().fired == frozenset(crossed)


def test_thresholds_once_under_contention_when_crossed_by_many_at_once(store: BudgetStore) -> None:
    tracker = BudgetTracker(total=1000, store=store, thresholds=(0.5, 0.75, 0.9, 0.95, 1.0))
    got: list[BudgetWarning] = []
    lock = threading.Lock()

    def cb(w: BudgetWarning) -> None:
        with lock:
            got.append(w)

    tracker.subscribe(cb)
    barrier = threading.Barrier(100)

    def run() -> None:
        barrier.wait()
        try:
            tracker.consume(10)
        except LLMBudgetExceededError:
            pytest.fail("100 x 10 fits exactly in 1000")

    threads = [threading.Thread(target=run) for _ in range(100)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert tracker.spent == 1000
    assert sorted(w.threshold for w in got) == [0.5, 0.75, 0.9, 0.95, 1.0]
