"""UsageTracker: subscribers (sync, async, failing) and thread-safe aggregates."""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal

import orjson
import pytest

from llm_connect.usage import UsageEvent, UsageTracker


def test_subscribers_receive_events_and_unsubscribe(make_event) -> None:
    tr = UsageTracker()
    got: list[UsageEvent] = []
    off = tr.subscribe(got.append)
    tr.emit(make_event(1))
    off()
    tr.emit(make_event(2))
    assert [e.request_id for e in got] == ["req-1"]
    assert tr.unsubscribe(got.append) is False


def test_failing_subscriber_is_logged_and_isolated(make_event, caplog: pytest.LogCaptureFixture) -> None:
    tr = UsageTracker()
    got: list[str] = []

    def boom(e: UsageEvent) -> None:
        raise RuntimeError("subscriber bug")

    tr.subscribe(boom)
    tr.subscribe(lambda e: got.append(e.request_id))
    with caplog.at_level(logging.ERROR, logger="llm_connect.usage.tracker"):
        tr.emit(make_event(1))
    assert got == ["req-1"]
    assert tr.subscriber_errors == 1
    assert any("subscriber bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert tr.totals().requests == 1


async def test_aemit_awaits_async_subscribers_and_isolates_failures(make_event) -> None:
    tr = UsageTracker()
    seen: list[str] = []

    async def slow(e: UsageEvent) -> None:
        await asyncio.sleep(0.01)
        seen.append("async:" + e.request_id)

    async def bad(e: UsageEvent) -> None:
        raise ValueError("nope")

    class Dual:
        def __call__(self, e: UsageEvent) -> None:
            seen.append("sync-path")

        async def acall(self, e: UsageEvent) -> None:
            seen.append("acall:" + e.request_id)

    tr.subscribe(slow)
    tr.subscribe(bad)
    tr.subscribe(Dual())
    tr.subscribe(lambda e: seen.append("sync:" + e.request_id))
    await tr.aemit(make_event(3))
    assert sorted(seen) == ["acall:req-3", "async:req-3", "sync:req-3"]
    assert tr.subscriber_errors == 1


async def test_emit_inside_a_running_loop_schedules_async_subscribers(make_event) -> None:
    tr = UsageTracker()
    done = asyncio.Event()

    async def sub(e: UsageEvent) -> None:
        done.set()

    tr.subscribe(sub)
    tr.emit(make_event(1))
    await asyncio.wait_for(done.wait(), 1)


def test_emit_without_a_loop_runs_async_subscribers_to_completion(make_event) -> None:
    tr = UsageTracker()
    seen: list[str] = []

    async def sub(e: UsageEvent) -> None:
        await asyncio.sleep(0)
        seen.append(e.request_id)

    tr.subscribe(sub)
    tr.emit(make_event(5))
    assert seen == ["req-5"]


def test_aggregates_are_exact_under_200_threads(make_event) -> None:
    tr = UsageTracker()
    n_threads, per_thread = 200, 50
    counted = [0]
    lock = threading.Lock()

    def count(e: UsageEvent) -> None:
        with lock:
            counted[0] += 1

    tr.subscribe(count)
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        barrier.wait()
        for j in range(per_thread):
            tr.emit(
                UsageEvent(
                    request_id=f"{t}-{j}",
                    timestamp=make_event(0).timestamp,
                    provider="openai",
                    model=("gpt-4o", "gpt-4o-mini")[j % 2],
                    tenant_id=f"ten{t % 4}",
                    agent=f"ag{t % 5}",
                    input_tokens=3,
                    output_tokens=2,
                    cache_read_tokens=1,
                    reasoning_tokens=1,
                    total_tokens=5,
                    cost_usd=Decimal("0.000001") if j % 10 else None,
                    latency_ms=1.5,
                    success=j % 25 != 0,
                )
            )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    n = n_threads * per_thread
    tot = tr.totals()
    assert counted[0] == n
    assert tot.requests == n and tot.failures == n // 25
    assert (tot.input_tokens, tot.output_tokens, tot.cache_read_tokens, tot.reasoning_tokens, tot.total_tokens) == (
        3 * n,
        2 * n,
        n,
        n,
        5 * n,
    )
    assert tot.unpriced == n // 10
    assert tot.cost_usd == Decimal("0.000001") * (n - n // 10)
    assert tot.latency_ms_avg == 1.5 and tot.latency_ms_max == 1.5
    by_tenant = tr.by_tenant()
    assert sorted(by_tenant) == ["ten0", "ten1", "ten2", "ten3"]
    assert sum(s.requests for s in by_tenant.values()) == n
    assert by_tenant["ten0"].requests == 50 * per_thread
    assert {k: v.requests for k, v in tr.by_model().items()} == {"openai:gpt-4o": n // 2, "openai:gpt-4o-mini": n // 2}
    assert all(s.requests == 40 * per_thread for s in tr.by_agent().values())


def test_stats_are_json_safe_and_reset_clears(make_event) -> None:
    tr = UsageTracker()
    tr.emit(make_event(1, agent=None, tenant_id=None))
    s = tr.stats()
    orjson.dumps(s)
    assert s["totals"]["requests"] == 1
    assert s["by_agent"]["-"]["cost_usd"] == str(Decimal("0.000123") * 2)
    assert "-" in s["by_tenant"] and "openai:gpt-4o-mini" in s["by_model"]
    tr.reset()
    assert tr.totals().requests == 0 and tr.by_agent() == {}
