"""Cost of one reserve + settle on a BudgetTracker: in memory (threads) and on Redis (processes), and the
two ways to take Redis off a call's path, measured side by side on one event loop:

  * one round trip: reserve with one script, settle off the response path (the caller does not wait)
  * leased slices (LeasedBudgetStore): reserve and settle in process, spend flushed in the background

    python bench/budget_bench.py [--ops 200000] [--redis-ops 20000] [--redis redis://127.0.0.1:6379/0]

Prints a table. Memory numbers are wall time per operation over all threads (ns/op); Redis numbers are
wall time per operation over all processes (µs/op) and the per-call latency seen inside one process.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

from llm_connect.budget import BudgetTracker, MemoryBudgetStore, RedisBudgetStore

BIG = 10**15


def memory_run(threads: int, ops: int) -> float:
    """ns per reserve+settle, wall time over ``ops`` operations split across ``threads``."""
    tracker = BudgetTracker(total=BIG, store=MemoryBudgetStore())
    per = ops // threads
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        reserve = tracker.reserve
        barrier.wait()
        for _ in range(per):
            reserve(100).settle(60, None)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - start
    assert tracker.spent == per * threads * 60
    return elapsed / (per * threads) * 1e9


def redis_worker(url: str, namespace: str, ops: int, start_at: float) -> tuple[float, float]:
    """(start, end) wall times of ``ops`` reserve+settle calls in this process."""
    store = RedisBudgetStore(url, namespace=namespace)
    tracker = BudgetTracker(total=BIG, store=store, budget_id="bench")
    tracker.reserve(1).settle(1, None)  # connect + load scripts
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    for _ in range(ops):
        tracker.reserve(100).settle(60, None)
    t1 = time.time()
    store.close()
    return t0, t1


def redis_run(url: str, processes: int, ops: int) -> tuple[float, float]:
    """(aggregate µs/op, per-call latency µs inside a process) for reserve+settle on one Redis budget."""
    ns = f"llmc-bench-{uuid.uuid4().hex[:8]}"
    per = ops // processes
    start_at = time.time() + 2.0
    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
            spans = list(
                pool.map(redis_worker, [url] * processes, [ns] * processes, [per] * processes, [start_at] * processes)
            )
    finally:
        RedisBudgetStore(url, namespace=ns).drop_namespace()
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    latency = sum(e - s for s, e in spans) / processes / per
    return wall / (per * processes) * 1e6, latency * 1e6


async def redis_async_run(url: str, ops: int) -> float:
    """µs per sequential areserve+asettle on one event loop."""
    store = RedisBudgetStore(url, namespace=f"llmc-bench-{uuid.uuid4().hex[:8]}")
    tracker = BudgetTracker(total=BIG, store=store, budget_id="bench")
    await (await tracker.areserve(1)).asettle(1, None)
    start = time.perf_counter()
    for _ in range(ops):
        await (await tracker.areserve(100)).asettle(60, None)
    elapsed = time.perf_counter() - start
    store.drop_namespace()
    await store.aclose()
    return elapsed / ops * 1e6


async def redis_one_trip_run(url: str, ops: int) -> float:
    """µs per areserve (awaited) with its asettle left to run in the background: one round trip on the path."""
    store = RedisBudgetStore(url, namespace=f"llmc-bench-{uuid.uuid4().hex[:8]}")
    tracker = BudgetTracker(total=BIG, store=store, budget_id="bench")
    await (await tracker.areserve(1)).asettle(1, None)
    pending: set[asyncio.Task[object]] = set()
    start = time.perf_counter()
    for _ in range(ops):
        res = await tracker.areserve(100)
        task = asyncio.ensure_future(res.asettle(60, None))
        pending.add(task)
        task.add_done_callback(pending.discard)
    elapsed = time.perf_counter() - start
    await asyncio.gather(*pending)
    store.drop_namespace()
    await store.aclose()
    return elapsed / ops * 1e6


async def redis_leased_run(url: str, ops: int) -> tuple[float, int]:
    """(µs per areserve+asettle, Redis round trips) on a LeasedBudgetStore."""
    from llm_connect.budget.leases import LeasedBudgetStore

    redis = RedisBudgetStore(url, namespace=f"llmc-bench-{uuid.uuid4().hex[:8]}")
    store = LeasedBudgetStore(redis)
    tracker = BudgetTracker(total=BIG, store=store, budget_id="bench")
    await (await tracker.areserve(1)).asettle(1, None)
    await asyncio.sleep(0.1)  # the first slice is taken in the background
    trips = store.syncs
    start = time.perf_counter()
    for _ in range(ops):
        await (await tracker.areserve(100)).asettle(60, None)
    elapsed = time.perf_counter() - start
    trips = store.syncs - trips
    await store.aclose()
    redis.drop_namespace()
    return elapsed / ops * 1e6, trips


async def memory_async_run(ops: int) -> float:
    tracker = BudgetTracker(total=BIG, store=MemoryBudgetStore())
    start = time.perf_counter()
    for _ in range(ops):
        await (await tracker.areserve(100)).asettle(60, None)
    return (time.perf_counter() - start) / ops * 1e6


def redis_ping(url: str, ops: int) -> float:
    """µs per bare PING with redis-py: the floor under any Redis round trip on this machine."""
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    start = time.perf_counter()
    for _ in range(ops):
        client.ping()
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed / ops * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=200_000, help="memory reserve+settle operations")
    ap.add_argument("--redis-ops", type=int, default=20_000, help="Redis reserve+settle operations")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--no-redis", action="store_true")
    args = ap.parse_args()

    rows: list[tuple[str, str, str]] = []
    memory_run(1, 10_000)  # warm up
    rows.append(("memory, 1 thread", f"{memory_run(1, args.ops):,.0f} ns/op", ""))
    rows.append(("memory, 8 threads", f"{memory_run(8, args.ops):,.0f} ns/op", "aggregate (GIL-bound)"))
    if not args.no_redis:
        for procs in (1, 4):
            agg, lat = redis_run(args.redis, procs, args.redis_ops)
            label = f"redis, {procs} process{'es' if procs > 1 else ''}"
            rows.append((label, f"{agg:,.1f} µs/op", f"{lat:,.1f} µs per reserve+settle in a process"))
        n = args.redis_ops // 4
        us = asyncio.run(redis_async_run(args.redis, n))
        rows.append(("redis async, 1 loop", f"{us:,.1f} µs/op", "sequential areserve+asettle (2 round trips)"))
        us = asyncio.run(redis_one_trip_run(args.redis, n))
        rows.append(("redis async, 1 trip", f"{us:,.1f} µs/op", "areserve awaited, asettle in the background"))
        us, trips = asyncio.run(redis_leased_run(args.redis, n))
        rows.append(("redis leased slices", f"{us:,.1f} µs/op", f"LeasedBudgetStore: {trips} round trips in {n:,} ops"))
        us = asyncio.run(memory_async_run(n))
        rows.append(("memory async", f"{us:,.1f} µs/op", "the same loop on MemoryBudgetStore"))
        ping = redis_ping(args.redis, args.redis_ops // 4)
        rows.append(("(reference) redis PING", f"{ping:,.1f} µs/op", "one bare round trip; reserve+settle = 2"))

    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'reserve + settle':<{w0}}  {'cost':>{w1}}  note")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 30}")
    for name, cost, note in rows:
        print(f"{name:<{w0}}  {cost:>{w1}}  {note}")


if __name__ == "__main__":
    main()
