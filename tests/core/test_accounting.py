"""Budgets and usage inside the adapter call: reserve → call → settle, for calls and streams, on real adapters."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest

from llm_connect import (
    FakeAdapter,
    FakeReply,
    LLMBudgetExceededError,
    LLMProviderUnavailableError,
    Message,
    RunConfig,
    StreamChunk,
    Usage,
    create_adapter,
)
from llm_connect.budget import BudgetTracker
from llm_connect.testing import MockReply, MockServer
from llm_connect.usage import UsageTracker

WORDS45 = " ".join(["w"] * 45)


async def settled(tracker: BudgetTracker, seconds: float = 2.0) -> None:
    """An abandoned async generator is closed by the loop's finaliser shortly after; wait for it."""
    for _ in range(int(seconds / 0.01)):
        if tracker.reserved == 0:
            return
        await asyncio.sleep(0.01)


async def test_delegation_chain_across_three_adapters_hits_the_cap_and_not_one_token_more():
    a_tracker = BudgetTracker(total=500)
    b_tracker = a_tracker.child(total=10_000)
    c_tracker = b_tracker.child(total=10_000)
    adapters = [create_adapter("fake:a", replies=[WORDS45] * 20) for _ in range(3)]
    trackers = [a_tracker, b_tracker, c_tracker]
    settled = 0
    refused = 0
    for i in range(20):
        cfg = RunConfig(max_tokens=45, budget_tracker=trackers[i % 3])
        try:
            r = await adapters[i % 3].async_execute_prompt("a b c d", cfg)  # 5 in + 45 out = 50
            settled += r.usage.total_tokens
        except LLMBudgetExceededError:
            refused += 1
    assert settled == 500 and a_tracker.spent == 500 and a_tracker.reserved == 0
    assert refused == 10
    assert b_tracker.spent <= 500 and c_tracker.spent <= b_tracker.spent


async def test_chain_cap_is_exact_when_calls_do_not_divide_it():
    """Uneven calls: the one that no longer fits whole runs with max_tokens clamped to what is left, so the
    cap is spent to the token; then every call is refused."""
    a = BudgetTracker(total=1000)
    c = a.child(total=5000).child(total=5000)
    adapter = create_adapter("fake:a", replies=[" ".join(["w"] * 88)] * 40)
    spent, finishes, refused = 0, [], 0
    for _ in range(40):
        try:
            r = await adapter.async_execute_prompt("a b c d", RunConfig(max_tokens=88, budget_tracker=c))
            spent += r.usage.total_tokens  # 5 + 88 = 93, the last one 5 + 65
            finishes.append(r.finish_reason)
        except LLMBudgetExceededError:
            refused += 1
    assert spent == 1000 == a.spent and a.reserved == 0 and a.overrun == 0
    assert finishes == ["stop"] * 10 + ["length"] and refused == 29
    # nothing is left: even a call without max_tokens is refused before the provider is called
    calls = len(adapter.calls)
    with pytest.raises(LLMBudgetExceededError):
        await adapter.async_execute_prompt("a b c d", RunConfig(budget_tracker=c))
    assert len(adapter.calls) == calls


async def test_refusal_happens_before_any_provider_call():
    async with MockServer() as mock:
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        with pytest.raises(LLMBudgetExceededError):  # not even the prompt fits
            await a.async_execute_prompt("hello", RunConfig(max_tokens=500, budget_tracker=BudgetTracker(total=8)))
        a.fit_to_budget = False  # strict: max_tokens as asked, or refused
        with pytest.raises(LLMBudgetExceededError):
            await a.async_execute_prompt("hello", RunConfig(max_tokens=500, budget_tracker=BudgetTracker(total=100)))
        assert mock.requests == []


async def test_a_max_tokens_that_does_not_fit_is_clamped_to_what_remains():
    async with MockServer() as mock:
        tracker = BudgetTracker(total=100)
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        r = await a.async_execute_prompt("hello", RunConfig(max_tokens=500, budget_tracker=tracker))
        sent = mock.last_request["body"]["max_completion_tokens"]
        assert 0 < sent <= 100 - a.count_input_tokens([Message("user", "hello")], RunConfig())
        assert r.text and tracker.reserved == 0 and tracker.spent == r.usage.total_tokens <= 100


async def test_missing_max_tokens_is_clamped_to_what_remains():
    async with MockServer() as mock:
        tracker = BudgetTracker(total=300)
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        await a.async_execute_prompt("hi", RunConfig(budget_tracker=tracker))
        sent = mock.last_request["body"]["max_completion_tokens"]  # OpenAI's current name
        est_in = a.count_input_tokens([Message("user", "hi")], RunConfig())
        assert sent == 300 - est_in
        assert tracker.reserved == 0 and 0 < tracker.spent <= 300


async def test_settles_to_reported_usage_and_releases_the_rest():
    async with MockServer() as mock:
        mock.script(MockReply(text="ok", input_tokens=7, output_tokens=3))
        tracker = BudgetTracker(total=10_000)
        a = create_adapter("anthropic:claude-haiku-4-5", api_base=mock.url, api_key="k")
        r = await a.async_execute_prompt("hello", RunConfig(max_tokens=1000, budget_tracker=tracker))
        assert r.usage.total_tokens == 10 and tracker.spent == 10 and tracker.reserved == 0


async def test_errors_release_the_reservation():
    async with MockServer() as mock:
        mock.script(MockReply(error="server"))
        tracker = BudgetTracker(total=10_000)
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        with pytest.raises(LLMProviderUnavailableError):
            await a.async_execute_prompt("hello", RunConfig(max_tokens=100, budget_tracker=tracker))
        assert tracker.spent == 0 and tracker.reserved == 0


async def test_stream_early_break_settles_on_what_was_produced():
    events = []
    usage_tracker = UsageTracker()
    usage_tracker.subscribe(events.append)
    tracker = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[" ".join(f"w{i}" for i in range(40))])
    cfg = RunConfig(max_tokens=100, budget_tracker=tracker, usage_tracker=usage_tracker)
    got = []
    async for chunk in a.astream("a b c", cfg):
        got.append(chunk.text)
        if len(got) == 3:
            break
    await settled(tracker)
    assert tracker.reserved == 0
    assert 0 < tracker.spent < 4 + 100  # prompt + what was produced, not the whole reservation
    assert len(events) == 1 and events[0].streamed and events[0].output_tokens > 0


async def test_stream_cut_mid_way_settles_and_reports_failure():
    async with MockServer() as mock:
        mock.script(MockReply(text=" ".join(["x"] * 30), fault="cut_stream", cut_after=6))
        events = []
        ut = UsageTracker()
        ut.subscribe(events.append)
        tracker = BudgetTracker(total=10_000)
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        with pytest.raises(LLMProviderUnavailableError):
            async for _ in a.astream("go", RunConfig(max_tokens=100, budget_tracker=tracker, usage_tracker=ut)):
                pass
        assert tracker.reserved == 0 and tracker.spent > 0
        assert len(events) == 1 and events[0].success is False


async def test_stream_closed_with_aclosing_settles_at_once():
    from contextlib import aclosing

    tracker = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[" ".join(["v"] * 40)])
    async with aclosing(a.astream("go", RunConfig(max_tokens=100, budget_tracker=tracker))) as stream:
        async for _ in stream:
            break
    assert tracker.reserved == 0 and tracker.spent > 0


async def test_cancelled_stream_settles():
    tracker = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[FakeReply(text=" ".join(["y"] * 50))])
    started = asyncio.Event()

    async def consume():
        async for chunk in a.astream("go", RunConfig(max_tokens=100, budget_tracker=tracker)):
            if chunk.text:
                started.set()
                await asyncio.sleep(10)

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settled(tracker)
    assert tracker.reserved == 0 and tracker.spent > 0


async def test_completed_stream_settles_to_provider_usage_before_the_last_chunk_arrives():
    tracker = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[FakeReply(text="a b c", usage=Usage(11, 3))])
    seen_usage = False
    async for chunk in a.astream("go", RunConfig(max_tokens=10, budget_tracker=tracker)):
        if chunk.usage is not None:
            seen_usage = True
            assert tracker.spent == 14 and tracker.reserved == 0  # already settled when the caller sees it
    assert seen_usage


async def test_warnings_fire_once_each_through_adapter_calls():
    tracker = BudgetTracker(total=1000)
    seen = []
    tracker.subscribe(seen.append)
    a = create_adapter("fake:w", replies=[FakeReply(text="x", usage=Usage(50, 50))] * 12)
    for _ in range(10):
        await a.async_execute_prompt("q", RunConfig(max_tokens=1, budget_tracker=tracker))
    assert [w.threshold for w in seen] == [0.75, 0.90, 0.95]
    assert tracker.spent == 1000


async def test_usd_budget_refuses_an_unpriced_model_and_charges_a_priced_one():
    async with MockServer() as mock:
        usd = BudgetTracker(total_usd=Decimal("1.00"))
        unpriced = create_adapter("vllm:my-own-model", api_base=mock.openai_base)
        with pytest.raises(LLMBudgetExceededError, match="price"):
            await unpriced.async_execute_prompt("x", RunConfig(max_tokens=10, budget_tracker=usd))
        assert mock.requests == []
        priced = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        r = await priced.async_execute_prompt("x y z", RunConfig(max_tokens=10, budget_tracker=usd))
        assert r.cost_usd is not None and r.cost_usd > 0
        assert usd.spent_usd == r.cost_usd and usd.reserved_usd == 0


async def test_500_coroutines_through_adapters_never_overshoot():
    rng = random.Random(7)
    tracker = BudgetTracker(total=20_000)
    ut = UsageTracker()
    adapters = [
        create_adapter(
            "fake:r",
            replies=[
                FakeReply(text="z", usage=Usage(2, rng.randint(1, 60)), latency=rng.random() / 100) for _ in range(500)
            ],
        )
        for _ in range(4)
    ]

    async def one(i):
        try:
            await adapters[i % 4].async_execute_prompt(
                "p", RunConfig(max_tokens=60, budget_tracker=tracker, usage_tracker=ut)
            )
        except LLMBudgetExceededError:
            pass

    await asyncio.gather(*(one(i) for i in range(500)))
    totals = ut.totals()
    assert tracker.reserved == 0
    assert tracker.spent <= 20_000
    assert tracker.spent == totals.input_tokens + totals.output_tokens


async def test_usage_events_carry_who_called():
    ut = UsageTracker()
    events = []
    ut.subscribe(events.append)
    a = create_adapter("fake:m")
    cfg = RunConfig(tenant_id="acme", agent="triage-bot", thread_id="t-1", task_type="triage", usage_tracker=ut)
    r = await a.async_execute_prompt("hello", cfg)
    e = events[0]
    assert (e.tenant_id, e.agent, e.thread_id, e.task_type) == ("acme", "triage-bot", "t-1", "triage")
    assert (e.provider, e.model, e.success) == ("fake", "m", True)
    assert e.total_tokens == r.usage.total_tokens and e.cost_usd == Decimal(0)


async def test_a_child_of_a_usd_budget_prices_its_reservations():
    parent = BudgetTracker(total_usd=Decimal("1.00"))
    child = parent.child(total=100_000)
    async with MockServer() as mock:
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        r = await a.async_execute_prompt("hello", RunConfig(max_tokens=20, budget_tracker=child))
    assert parent.spent_usd == r.cost_usd > 0 and child.spent == r.usage.total_tokens


async def test_a_reply_without_usage_is_billed_an_estimate_not_zero(http_route):
    from aiohttp import web

    async def no_usage(request):
        await request.read()
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "forty two words " * 10},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    base = await http_route("/v1/chat/completions", no_usage)
    tracker = BudgetTracker(total=200)
    a = create_adapter("vllm:m", api_base=f"{base}/v1")
    r = await a.async_execute_prompt("hi", RunConfig(max_tokens=100, budget_tracker=tracker))
    assert r.usage.output_tokens == 100  # the estimate, capped at max_tokens
    assert tracker.spent == r.usage.total_tokens > 0
    # the second call only fits clamped: it is billed its (clamped) max_tokens, to the cap exactly
    r = await a.async_execute_prompt("hi", RunConfig(max_tokens=100, budget_tracker=tracker))
    assert r.usage.output_tokens == 200 - 2 * r.usage.input_tokens - 100
    assert tracker.spent == 200 and tracker.overrun == 0
    with pytest.raises(LLMBudgetExceededError):  # the budget really is used up now
        await a.async_execute_prompt("hi", RunConfig(max_tokens=100, budget_tracker=tracker))


async def test_an_early_stop_is_never_billed_more_output_than_max_tokens():
    tracker = BudgetTracker(total=100_000)
    a = create_adapter("fake:s", replies=[" ".join(["abcdefgh"] * 200)])
    got = 0
    async for chunk in a.astream("go", RunConfig(max_tokens=150, budget_tracker=tracker)):
        got += bool(chunk.text)
        if got == 120:
            break
    await settled(tracker)
    assert tracker.spent <= a.count_input_tokens([Message("user", "go")], RunConfig()) + 150


async def test_a_stopped_tool_call_stream_is_billed():
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}

    class ToolStream(FakeAdapter):
        async def _stream(self, messages, config, max_tokens):
            for _ in range(50):
                yield StreamChunk(tool_calls=[call])

    tracker = BudgetTracker(total=100_000)
    async for chunk in ToolStream("t").astream("go", RunConfig(max_tokens=500, budget_tracker=tracker)):
        if chunk.tool_calls:
            break
    await settled(tracker)
    assert tracker.spent > 0


async def test_one_call_without_max_tokens_does_not_reserve_a_whole_shared_budget():
    tracker = BudgetTracker(total=1_000_000)
    a = create_adapter("fake:s", replies=[FakeReply(text="x", latency=0.05)] * 20)
    await asyncio.gather(*(a.async_execute_prompt("go", RunConfig(budget_tracker=tracker)) for _ in range(20)))
    assert tracker.reserved == 0 and tracker.spent > 0  # all 20 ran side by side: none was refused


async def test_a_usd_only_budget_clamps_output_to_what_it_can_pay_for():
    async with MockServer() as mock:
        usd = BudgetTracker(total_usd=Decimal("0.001"))  # gpt-4o-mini: ~1 600 output tokens
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        await a.async_execute_prompt("hello", RunConfig(budget_tracker=usd))
        sent = mock.last_request["body"]["max_completion_tokens"]  # OpenAI's current name
        assert 1000 < sent < 1700
        assert usd.spent_usd <= Decimal("0.001")


async def test_usd_reservation_prices_input_at_the_cache_write_rate():
    """Anthropic bills a cache write at 1.25x input: the worst case must cover it."""
    async with MockServer() as mock:
        a = create_adapter("anthropic:claude-sonnet-4-5", api_base=mock.url, api_key="k")
        plain = a.price(Usage(input_tokens=1000, output_tokens=10), estimate=True)
        worst = a._worst_cost(1000, 10)
        assert plain is not None and worst > plain
