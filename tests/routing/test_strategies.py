"""Routing strategies: latency (mock server latencies), weighted, least-busy, cost, usage, ordered; rpm/tpm caps."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import pytest

from llm_connect import FakeAdapter, FakeReply, LLMProviderUnavailableError, RunConfig, Usage
from llm_connect.routing import Deployment, Router
from llm_connect.testing import MockServer

from .conftest import dep, hits, wait_for_fresh_minute


async def test_latency_routing_sends_most_traffic_to_the_faster_deployment(mock: MockServer) -> None:
    mock.set_model_latency("quick", 0.02)
    mock.set_model_latency("sluggish", 0.2)
    router = Router({"g": [dep(mock, "quick"), dep(mock, "sluggish")]}, strategy="latency")
    for _ in range(4):  # warm-up: each deployment is measured
        await router.async_execute_prompt("warm")
    mock.clear_requests()
    for _ in range(40):
        await router.async_execute_prompt("go")
    quick, slow = hits(mock, "quick"), hits(mock, "sluggish")
    assert quick + slow == 40
    assert quick / 40 >= 0.8, (quick, slow)


async def test_latency_routing_under_concurrency(mock: MockServer) -> None:
    mock.set_model_latency("quick", 0.02)
    mock.set_model_latency("sluggish", 0.2)
    router = Router({"g": [dep(mock, "quick"), dep(mock, "sluggish")]}, strategy="latency", latency_buffer=0.1)
    for _ in range(4):
        await router.async_execute_prompt("warm")
    mock.clear_requests()
    for _ in range(8):
        await asyncio.gather(*(router.async_execute_prompt("go") for _ in range(5)))
    assert hits(mock, "quick") / 40 >= 0.8


async def test_latency_routing_uses_time_to_first_token_for_streams() -> None:
    # "late" answers fast in full but starts streaming late; "early" starts at once
    late = FakeAdapter("late", replies=[FakeReply(text="x", latency=0.08)] * 20)
    early = FakeAdapter("early", replies=[FakeReply(text="y", latency=0.0)] * 20)
    group = [Deployment(adapter=late, name="late"), Deployment(adapter=early, name="early")]
    router = Router({"g": group}, strategy="latency")
    for _ in range(4):  # warm-up: two samples each
        [c async for c in router.astream("warm")]
    served = Counter()
    for _ in range(10):
        chunks = [c async for c in router.astream("go")]
        served[chunks[-1].model] += 1
    assert served["early"] == 10
    health = {r["name"]: r for r in (await router.ahealth())["g"]}
    assert health["late"]["ttft_ms"] > health["early"]["ttft_ms"]


async def test_weighted_shuffle_follows_the_weights() -> None:
    a, b = FakeAdapter("a"), FakeAdapter("b")
    router = Router(
        {"g": [Deployment(adapter=a, name="a", weight=3), Deployment(adapter=b, name="b", weight=1)]}, seed=7
    )
    served = Counter([(await router.async_execute_prompt("x")).model for _ in range(800)])
    assert 0.68 < served["a"] / 800 < 0.82, served


async def test_least_busy_spreads_concurrent_calls() -> None:
    adapters = [FakeAdapter(n, latency=0.05) for n in ("a", "b", "c")]
    router = Router({"g": [Deployment(adapter=x, name=x.model) for x in adapters]}, strategy="least_busy")
    results = await asyncio.gather(*(router.async_execute_prompt("x") for _ in range(9)))
    assert Counter(r.model for r in results) == {"a": 3, "b": 3, "c": 3}


async def test_cost_routing_prefers_the_cheapest_priced_deployment(mock: MockServer) -> None:
    # real prices from genai-prices: gpt-4o-mini is far cheaper than gpt-4o; an unpriced model goes last
    def openai(model: str) -> Deployment:
        return Deployment(model=f"openai:{model}", api_base=mock.openai_base, api_key="sk-test", name=model)

    router = Router({"g": [openai("gpt-4o"), openai("my-unpriced-model"), openai("gpt-4o-mini")]}, strategy="cost")
    for _ in range(5):
        assert (await router.async_execute_prompt("x")).model == "gpt-4o-mini"
    from llm_connect.testing import MockReply

    mock.script(MockReply(model="gpt-4o-mini", error="server"))
    assert (await router.async_execute_prompt("x")).model == "gpt-4o"


async def test_cost_routing_uses_price_overrides() -> None:
    a, b = FakeAdapter("a"), FakeAdapter("b")
    router = Router(
        {"g": [Deployment(adapter=a, name="a", price_per_1k="0.02"), Deployment(adapter=b, price_per_1k=0.001)]},
        strategy="cost",
    )
    assert {(await router.async_execute_prompt("x")).model for _ in range(5)} == {"b"}
    assert router.describe()[0]["deployments"][1]["price_per_1k"] == str(Decimal("0.001"))


async def test_rpm_cap_skips_a_deployment_for_the_rest_of_the_minute() -> None:
    wait_for_fresh_minute()
    a, b = FakeAdapter("a"), FakeAdapter("b")
    router = Router(
        {"g": [Deployment(adapter=a, name="a", rpm=2), Deployment(adapter=b, name="b")]}, strategy="ordered"
    )
    served = [(await router.async_execute_prompt("x")).model for _ in range(4)]
    assert served == ["a", "a", "b", "b"]


async def test_tpm_cap_and_all_capped_error() -> None:
    wait_for_fresh_minute()
    a = FakeAdapter("a", replies=[FakeReply(text="ok", usage=Usage(input_tokens=60, output_tokens=50))])
    router = Router({"g": [Deployment(adapter=a, name="a", tpm=100)]}, num_retries=0)
    await router.async_execute_prompt("x")  # 110 tokens: over the cap for this minute
    with pytest.raises(LLMProviderUnavailableError, match="at its rpm/tpm cap"):
        await router.async_execute_prompt("y")


async def test_usage_routing_prefers_the_most_headroom() -> None:
    wait_for_fresh_minute()
    a, b = FakeAdapter("a"), FakeAdapter("b")
    router = Router(
        {"g": [Deployment(adapter=a, name="a", rpm=10), Deployment(adapter=b, name="b", rpm=100)]},
        strategy="usage",
    )
    served = Counter([(await router.async_execute_prompt("x")).model for _ in range(20)])
    # b has ten times the headroom: a gets a call only while its share used is lower
    assert served["b"] > served["a"] >= 1
    rows = {r["name"]: r for r in (await router.ahealth())["g"]}
    assert rows["a"]["rpm_used"] + rows["b"]["rpm_used"] == 20


async def test_ordered_strategy_is_a_failover_chain() -> None:
    a = FakeAdapter("a", replies=[FakeReply(error=LLMProviderUnavailableError("down"))])
    b, c = FakeAdapter("b"), FakeAdapter("c")
    router = Router({"g": [Deployment(adapter=x, name=x.model) for x in (a, b, c)]}, strategy="ordered")
    assert (await router.async_execute_prompt("x", RunConfig())).model == "b"
    assert len(c.calls) == 0
