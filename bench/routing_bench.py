"""Routing decision overhead per call: a Router over 50 instant fake deployments vs the inner adapter directly.

For each strategy, prints sequential µs per call (median of rounds) through the Router, beside the same
call made on one of its fake adapters directly; the difference is what routing costs per call (state
snapshot, strategy pick, RunConfig copy, health bookkeeping). With ``--redis`` the memory state is
replaced by RedisRouterState (one MGET before and one pipelined write after each call).

    python bench/routing_bench.py [--deployments 50] [--calls 5000] [--rounds 5] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid

from llm_connect import FakeAdapter, RunConfig
from llm_connect.routing import Deployment, Router

STRATEGIES = ("weighted", "latency", "least_busy", "cost", "usage", "ordered")


def make_router(n: int, strategy: str, state: object = None) -> Router:
    group = [
        Deployment(adapter=FakeAdapter(f"m{i}"), name=f"d{i}", weight=1 + i % 3, price_per_1k=0.001 * (1 + i % 7))
        for i in range(n)
    ]
    return Router({"g": group}, strategy=strategy, state=state, seed=1)  # type: ignore[arg-type]


async def per_call_us(adapter, cfg: RunConfig, n: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for _ in range(n):
        await adapter.async_execute_prompt("hello", cfg)
    return (time.perf_counter() - t0) / n * 1e6


def forget_calls(*adapters: object) -> None:
    """FakeAdapter records every prompt; drop them so a growing heap (GC) does not skew later rounds."""
    for a in adapters:
        if isinstance(a, Router):
            forget_calls(*(d.adapter for ds in a.groups.values() for d in ds))
        elif isinstance(a, FakeAdapter):
            a.calls.clear()
    gc.collect()


async def compare(direct: FakeAdapter, router: Router, cfg: RunConfig, calls: int, rounds: int) -> tuple[float, float]:
    """Median µs/call of the inner adapter and of the router, measured in alternating rounds."""
    for a in (direct, router):
        await per_call_us(a, cfg, min(calls, 500))  # warm-up
    d_samples, r_samples = [], []
    for _ in range(rounds):
        forget_calls(direct, router)
        d_samples.append(await per_call_us(direct, cfg, calls))
        forget_calls(direct, router)
        r_samples.append(await per_call_us(router, cfg, calls))
    forget_calls(direct, router)
    return statistics.median(d_samples), statistics.median(r_samples)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deployments", type=int, default=50)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--redis", default=None, help="also measure with RedisRouterState at this URL")
    args = ap.parse_args()

    cfg = RunConfig()
    print(f"{args.deployments} deployments in one group, instant fake provider, sequential calls")
    print(f"{'path':<28}{'direct µs':>10}{'router µs':>11}{'routing µs':>12}")
    direct = FakeAdapter("direct")
    for strategy in STRATEGIES:
        d_us, r_us = await compare(direct, make_router(args.deployments, strategy), cfg, args.calls, args.rounds)
        print(f"{'router, ' + strategy:<28}{d_us:>10.1f}{r_us:>11.1f}{r_us - d_us:>12.1f}")
    if args.redis:
        from llm_connect.routing import RedisRouterState

        ns = f"llmc-bench-{uuid.uuid4().hex[:8]}"
        state = RedisRouterState(args.redis, namespace=ns)
        router = make_router(args.deployments, "weighted", state)
        d_us, r_us = await compare(direct, router, cfg, max(200, args.calls // 10), args.rounds)
        print(f"{'router, weighted, redis':<28}{d_us:>10.1f}{r_us:>11.1f}{r_us - d_us:>12.1f}")
        client = state.client()
        keys = [k async for k in client.scan_iter(match=f"{ns}:*")]
        if keys:
            await client.delete(*keys)
        await state.aclose()


if __name__ == "__main__":
    asyncio.run(main())
