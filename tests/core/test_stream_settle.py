"""A stream settles its budget and publishes exactly one usage event on every exit path: its end, an error,
the consumer stopping (GeneratorExit), a cancellation — including one that lands between the provider's
last chunk and the settle. Early ends bill what the provider reported so far and what was seen."""

from __future__ import annotations

import asyncio
import random
from contextlib import aclosing

import pytest

from llm_connect import (
    FakeAdapter,
    FakeReply,
    LLMProviderUnavailableError,
    RunConfig,
    StreamChunk,
    Usage,
    create_adapter,
)
from llm_connect.budget import BudgetTracker
from llm_connect.testing import MockReply, MockServer
from llm_connect.usage import UsageEvent, UsageTracker


class Recorder:
    """A usage subscriber whose async write takes ``delay`` seconds (a ledger commit, say)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.events: list[UsageEvent] = []
        self.writing = asyncio.Event()

    def __call__(self, event: UsageEvent) -> None:  # the sync path (unused by async calls)
        self.events.append(event)

    async def acall(self, event: UsageEvent) -> None:
        self.writing.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.events.append(event)


def tracked(delay: float = 0.0) -> tuple[UsageTracker, Recorder]:
    ut = UsageTracker()
    rec = Recorder(delay)
    ut.subscribe(rec)
    return ut, rec


async def until(predicate, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)


async def test_a_completed_stream_publishes_one_exact_event():
    ut, rec = tracked()
    budget = BudgetTracker(total=10_000)
    async with MockServer() as mock:
        mock.script(MockReply(text="one two three", input_tokens=9, output_tokens=3))
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        chunks = [c async for c in a.astream("hi", RunConfig(max_tokens=50, budget_tracker=budget, usage_tracker=ut))]
    assert "".join(c.text for c in chunks) == "one two three"
    assert chunks[-1].usage == Usage(9, 3) and chunks[-1].cost_usd > 0
    (e,) = rec.events
    assert (e.input_tokens, e.output_tokens, e.estimated, e.success) == (9, 3, False, True)
    assert e.cost_usd == chunks[-1].cost_usd and budget.spent == 12 and budget.reserved == 0


async def test_chunks_carrying_only_the_running_usage_are_not_passed_on():
    async with MockServer() as mock:
        a = create_adapter("anthropic:claude-haiku-4-5", api_base=mock.url, api_key="k")
        chunks = [c async for c in a.astream("hello there", RunConfig(max_tokens=50))]
    assert chunks and all(c.text or c.usage is not None for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.input_tokens > 0


async def test_a_stream_stopped_early_bills_the_usage_the_provider_already_reported():
    """Anthropic's message_start reports input and cache tokens: a hung-up stream bills them, not a guess that
    ignores them (cache writes cost 1.25x input)."""
    ut, rec = tracked()
    budget = BudgetTracker(total=100_000)
    words = " ".join(f"w{i}" for i in range(40))
    async with MockServer(chunk_delay=0.005) as mock:
        mock.script(MockReply(text=words, input_tokens=900, cache_write_tokens=800, output_tokens=40))
        a = create_adapter("anthropic:claude-haiku-4-5", api_base=mock.url, api_key="k")
        cfg = RunConfig(max_tokens=100, budget_tracker=budget, usage_tracker=ut)
        async with aclosing(a.astream("hi", cfg)) as stream:
            async for chunk in stream:
                if chunk.text:
                    break
    (e,) = rec.events
    assert e.estimated and e.streamed and e.success
    assert e.cache_write_tokens == 800 and e.input_tokens >= 900  # reported, kept; input never below it
    assert 1 <= e.output_tokens <= 100
    assert budget.spent == e.total_tokens and budget.reserved == 0
    assert e.cost_usd is not None and e.cost_usd > a.price(Usage(e.input_tokens, e.output_tokens))  # the cache write


async def test_a_cut_stream_is_one_failed_estimated_event():
    ut, rec = tracked()
    budget = BudgetTracker(total=10_000)
    async with MockServer() as mock:
        mock.script(MockReply(text=" ".join(["x"] * 30), fault="cut_stream", cut_after=6))
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        with pytest.raises(LLMProviderUnavailableError):
            async for _ in a.astream("go", RunConfig(max_tokens=100, budget_tracker=budget, usage_tracker=ut)):
                pass
    (e,) = rec.events
    assert e.success is False and e.estimated and e.output_tokens > 0
    assert budget.spent == e.total_tokens and budget.reserved == 0


async def test_an_abandoned_stream_is_settled_once_by_its_finaliser():
    ut, rec = tracked()
    budget = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[" ".join(["v"] * 40)])
    stream = a.astream("go", RunConfig(max_tokens=100, budget_tracker=budget, usage_tracker=ut))
    async for _ in stream:
        break
    del stream  # no aclose(): the event loop's async-generator finaliser closes it
    await until(lambda: rec.events)
    (e,) = rec.events
    assert e.estimated and budget.spent == e.total_tokens > 0 and budget.reserved == 0


async def test_a_stream_cancelled_while_it_waits_for_the_provider_publishes_one_event():
    ut, rec = tracked()
    budget = BudgetTracker(total=10_000)
    started = asyncio.Event()
    async with MockServer(chunk_delay=0.05) as mock:
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")

        async def consume():
            cfg = RunConfig(max_tokens=100, budget_tracker=budget, usage_tracker=ut)
            async for chunk in a.astream("one two three four five six", cfg):
                if chunk.text:
                    started.set()  # the next anext() waits on the provider: the cancellation lands there

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (e,) = rec.events  # published before the cancelled consumer finished
    assert e.estimated and budget.spent == e.total_tokens > 0 and budget.reserved == 0


async def test_a_cancellation_between_the_last_chunk_and_the_settle_still_publishes():
    """The case that lost events: the provider's final usage arrived, the settle began, the client hung up."""
    ut, rec = tracked(delay=0.05)  # the usage event's write is slow: the cancellation lands inside it
    budget = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[FakeReply(text="a b c", usage=Usage(11, 3))])
    seen: list[StreamChunk] = []

    async def consume():
        async for chunk in a.astream("go", RunConfig(max_tokens=10, budget_tracker=budget, usage_tracker=ut)):
            seen.append(chunk)

    task = asyncio.create_task(consume())
    await rec.writing.wait()  # the final chunk is being settled; the caller has not seen it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(c.usage is None for c in seen)
    (e,) = rec.events
    assert (e.input_tokens, e.output_tokens, e.estimated) == (11, 3, False)  # the provider's own count
    assert budget.spent == 14 and budget.reserved == 0


async def test_a_cancellation_that_repeats_while_settling_does_not_publish_twice():
    ut, rec = tracked(delay=0.05)
    budget = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[FakeReply(text="a b c", usage=Usage(11, 3))])

    async def consume():
        async for _ in a.astream("go", RunConfig(max_tokens=10, budget_tracker=budget, usage_tracker=ut)):
            pass

    task = asyncio.create_task(consume())
    await rec.writing.wait()
    for _ in range(3):
        task.cancel()
        await asyncio.sleep(0.005)
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: rec.events)
    await asyncio.sleep(0.1)
    assert len(rec.events) == 1 and budget.spent == 14 and budget.reserved == 0


async def test_hundreds_of_streams_hung_up_at_random_moments_each_publish_exactly_one_event():
    ut, rec = tracked(delay=0.02)  # a slow usage write: many cancellations land inside a settle
    budget = BudgetTracker(total=10**7)
    rng = random.Random(12)
    n = 200
    adapters = [
        create_adapter("fake:s", replies=[FakeReply(text=" ".join(["z"] * 20), usage=Usage(5, 20))] * (n // 4))
        for _ in range(4)
    ]

    async def consume(i):
        async for _ in adapters[i % 4].astream("p", RunConfig(max_tokens=30, budget_tracker=budget, usage_tracker=ut)):
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(consume(i)) for i in range(n)]
    loop = asyncio.get_running_loop()
    for t in tasks[: n * 3 // 4]:  # the last quarter runs to the end however slow the machine is
        loop.call_later(rng.random() * 0.1, t.cancel)
    await asyncio.gather(*tasks, return_exceptions=True)
    await until(lambda: len(rec.events) >= n)
    await asyncio.sleep(0.05)
    assert len(rec.events) == n  # one per call, cancelled or not
    assert budget.reserved == 0 and budget.spent == sum(e.total_tokens for e in rec.events)
    assert any(e.estimated for e in rec.events) and any(not e.estimated for e in rec.events)


async def test_reasoning_seen_before_a_hang_up_is_billed_as_output():
    class Thinker(FakeAdapter):
        async def _stream(self, messages, config, max_tokens):
            yield StreamChunk(usage_so_far=Usage(input_tokens=3, output_tokens=1))
            for _ in range(10):
                yield StreamChunk(reasoning="thinking hard ")
            yield StreamChunk(text="answer")

    ut, rec = tracked()
    got: list[StreamChunk] = []
    async with aclosing(Thinker("t").astream("q", RunConfig(max_tokens=500, usage_tracker=ut))) as stream:
        async for chunk in stream:
            got.append(chunk)
            if chunk.text:
                break
    assert [c.reasoning for c in got[:-1]] == ["thinking hard "] * 10  # passed on, text-less
    (e,) = rec.events
    assert e.estimated and e.reasoning_tokens == 140 and e.output_tokens == 140 + len("answer")
    assert e.input_tokens >= 3


async def test_a_reply_without_usage_is_marked_estimated(http_route):
    from aiohttp import web

    async def no_usage(request):
        await request.read()
        message = {"role": "assistant", "content": "some words"}
        return web.json_response({"id": "x", "model": "m", "choices": [{"index": 0, "message": message}]})

    base = await http_route("/v1/chat/completions", no_usage)
    ut, rec = tracked()
    await create_adapter("vllm:m", api_base=f"{base}/v1").async_execute_prompt("hi", RunConfig(usage_tracker=ut))
    (e,) = rec.events
    assert e.estimated and e.output_tokens == len("some words")


async def test_a_cancellation_while_a_reply_is_settled_still_publishes():
    ut, rec = tracked(delay=0.05)
    budget = BudgetTracker(total=10_000)
    a = create_adapter("fake:s", replies=[FakeReply(text="a b", usage=Usage(4, 2))])
    task = asyncio.create_task(a.async_execute_prompt("go", RunConfig(budget_tracker=budget, usage_tracker=ut)))
    await rec.writing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (e,) = rec.events
    assert (e.total_tokens, e.estimated) == (6, False) and budget.spent == 6 and budget.reserved == 0
