"""Streams travel in batches, one list of chunks per upstream read (llm_connect/_batches.py). Whatever way the
upstream's bytes are cut into reads, the caller gets every chunk in order, the usage chunk last; a stream is
accounted exactly once however it ends; a router still fails over while nothing has reached the caller. Real HTTP
to the shipped mock server; usage events from a real UsageTracker."""

from __future__ import annotations

import pytest

from llm_connect import LLMAdapter, LLMResponse, RunConfig, StreamChunk, create_adapter
from llm_connect.budget import BudgetTracker
from llm_connect.routing import Deployment, Router
from llm_connect.testing import MockReply, MockServer
from llm_connect.usage import UsageTracker

TEXT = " ".join(f"w{i}" for i in range(24))


def _tracked() -> tuple[UsageTracker, list[object]]:
    events: list[object] = []
    ut = UsageTracker()
    ut.subscribe(events.append)
    return ut, events


@pytest.mark.parametrize("delay", [None, 0.005], ids=["one-read", "a-read-per-frame"])
async def test_every_chunk_arrives_in_order_however_the_reads_fall(delay: float | None) -> None:
    async with MockServer() as mock:
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        mock.script(MockReply(text=TEXT, chunk_delay=delay))
        ut, events = _tracked()
        batches = [b async for b in a.astream_batches("go", RunConfig(max_tokens=100, usage_tracker=ut))]
        mock.script(MockReply(text=TEXT, chunk_delay=delay))
        flat = [c async for c in a.astream("go", RunConfig(max_tokens=100))]
    assert batches and all(batches), "no empty batch"
    chunks = [c for b in batches for c in b]
    assert "".join(c.text for c in chunks) == TEXT == "".join(c.text for c in flat)
    assert [c.text for c in chunks] == [c.text for c in flat]  # astream is the batches flattened
    assert chunks[-1].usage is not None and chunks[-1].finish_reason == "stop" and chunks[-1].cost_usd is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert len(events) == 1
    if delay:  # each frame its own read: the chunks come out as they arrive, not held back to the end
        assert len(batches) > 10
    else:  # frames that arrive together travel together, the final chunk with them
        assert len(batches) < len(chunks) / 2


async def test_closing_a_stream_mid_batch_accounts_it_once() -> None:
    async with MockServer() as mock:
        a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="k")
        # the whole answer in hand at once: its usage is settled before the first chunk is shown
        mock.script(MockReply(text=TEXT, output_tokens=24))
        ut, whole = _tracked()
        budget = BudgetTracker(total=10_000)
        stream = a.astream("go", RunConfig(max_tokens=100, usage_tracker=ut, budget_tracker=budget))
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        assert first.text == "w0"
        assert len(whole) == 1 and not whole[0].estimated and whole[0].output_tokens == 24  # type: ignore[attr-defined]
        assert budget.reserved == 0 and budget.spent == whole[0].total_tokens  # type: ignore[attr-defined]

        # a frame per read: closed after three chunks, billed on what was produced
        mock.script(MockReply(text=TEXT, chunk_delay=0.01))
        ut, cut = _tracked()
        stream = a.astream("go", RunConfig(max_tokens=100, usage_tracker=ut))
        got = [await anext(stream) for _ in range(3)]
        await stream.aclose()  # type: ignore[attr-defined]
    assert "".join(c.text for c in got) == "w0 w1 w2"
    assert len(cut) == 1
    event = cut[0]
    assert event.streamed and event.estimated and 0 < event.output_tokens < 24  # type: ignore[attr-defined]


async def test_a_router_fails_over_on_a_stream_cut_before_its_first_text() -> None:
    async with MockServer() as mock:
        first = create_adapter("openai:gpt-first", api_base=mock.openai_base, api_key="k")
        second = create_adapter("openai:gpt-second", api_base=mock.openai_base, api_key="k")
        router = Router(
            {"g": [Deployment(adapter=first, name="first"), Deployment(adapter=second, name="second")]},
            strategy="ordered",
            num_retries=0,
        )
        # the role frame only, then the connection is cut: nothing but held chunks so far
        mock.script(MockReply(model="gpt-first", text=TEXT, fault="cut_stream", cut_after=1))
        mock.script(MockReply(model="gpt-second", text=TEXT))
        ut, events = _tracked()
        batches = [b async for b in router.astream_batches("go", RunConfig(model_name="g", usage_tracker=ut))]
    chunks = [c for b in batches for c in b]
    assert "".join(c.text for c in chunks) == TEXT
    assert {c.model for c in chunks if c.text} == {"gpt-second"}
    assert chunks[-1].usage is not None
    assert sorted((e.model, e.success) for e in events) == [("gpt-first", False), ("gpt-second", True)]  # type: ignore[attr-defined]


class _ToolAnswer(LLMAdapter):
    """An adapter with no stream of its own: LLMAdapter.astream's default turns its answer into chunks."""

    provider = "plain"
    model = "tools"

    async def async_execute_prompt(self, prompt, config=None):  # type: ignore[no-untyped-def]
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        return LLMResponse(
            text="", model="tools", provider="plain", finish_reason="tool_calls", tool_calls=[call], service_tier="flex"
        )


async def test_the_default_stream_of_an_answer_keeps_tool_calls_and_tier_and_no_usage_is_unknown() -> None:
    chunks: list[StreamChunk] = [c async for c in _ToolAnswer().astream("go")]
    assert len(chunks) == 2
    delta, final = chunks
    assert delta.tool_calls and delta.tool_calls[0]["function"]["name"] == "f"
    assert final.finish_reason == "tool_calls" and final.service_tier == "flex"
    assert final.usage is None  # the answer reported no usage: unknown, not zero (the accounting estimates it)
    assert [b async for b in _ToolAnswer().astream_batches("go")] == [[c] for c in chunks]  # one chunk a batch
