"""Work loops shared by the concurrency tests and run in spawned processes (importable by module name)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from llm_connect.budget import BudgetTracker, BudgetWarning, LLMBudgetExceededError, RedisBudgetStore


@dataclass
class Tally:
    """What one worker did: the sums the tracker's numbers must match."""

    charged: int = 0
    actual: int = 0
    refused: int = 0
    settles: int = 0
    warnings: list[tuple[str, float]] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.charged += other.charged
        self.actual += other.actual
        self.refused += other.refused
        self.settles += other.settles
        self.warnings += other.warnings


def one_call(tracker: BudgetTracker, rng: random.Random, tally: Tally) -> None:
    """Reserve a worst case, then settle below it (mostly), above it (rarely) or release."""
    worst = rng.randint(1, 400)
    try:
        res = tracker.reserve(worst)
    except LLMBudgetExceededError:
        tally.refused += 1
        return
    roll = rng.random()
    if roll < 0.1:
        res.release()
        return
    actual = rng.randint(worst, worst + 50) if roll > 0.95 else rng.randint(0, worst)
    res.settle(actual, None)
    tally.charged += res.charged_tokens
    tally.actual += actual
    tally.settles += 1


async def one_acall(tracker: BudgetTracker, rng: random.Random, tally: Tally) -> None:
    import asyncio

    worst = rng.randint(1, 400)
    try:
        res = await tracker.areserve(worst)
    except LLMBudgetExceededError:
        tally.refused += 1
        return
    await asyncio.sleep(0)  # let the others interleave while "the call" runs
    roll = rng.random()
    if roll < 0.1:
        await res.arelease()
        return
    actual = rng.randint(worst, worst + 50) if roll > 0.95 else rng.randint(0, worst)
    await res.asettle(actual, None)
    tally.charged += res.charged_tokens
    tally.actual += actual
    tally.settles += 1


def process_worker(url: str, namespace: str, total: int, seed: int, calls: int, start_at: float) -> Tally:
    """One OS process: 4 threads racing on the shared Redis budget ``shared``."""
    store = RedisBudgetStore(url, namespace=namespace)
    tracker = BudgetTracker(total=total, store=store, budget_id="shared")
    tally = Tally()
    lock = threading.Lock()

    def on_warning(w: BudgetWarning) -> None:
        with lock:
            tally.warnings.append((w.unit, w.threshold))

    tracker.subscribe(on_warning)
    time.sleep(max(0.0, start_at - time.time()))

    def run(k: int) -> None:
        rng = random.Random(seed * 100 + k)
        mine = Tally()
        for _ in range(calls):
            one_call(tracker, rng, mine)
        with lock:
            tally.charged += mine.charged
            tally.actual += mine.actual
            tally.refused += mine.refused
            tally.settles += mine.settles

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    return tally
