"""aembed / embed through the built-in adapters and the Router against the mock server's real wire formats:
vectors, dimensions, the accounting (reserve -> settle -> price -> one usage event), failures and routing."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from llm_connect import (
    BudgetTracker,
    EmbeddingResponse,
    LLMBudgetExceededError,
    LLMCapabilityError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    Router,
    RunConfig,
    create_adapter,
)
from llm_connect.testing import MockServer
from llm_connect.usage import UsageTracker

TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]
#: the mock's count: whitespace words + 1 per text
MOCK_TOKENS = sum(len(t.split()) + 1 for t in TEXTS)


def _adapter(mock, provider: str, model: str, **kw):
    base = {"openai": mock.openai_base, "vllm": mock.openai_base}.get(provider, mock.url)
    return create_adapter(f"{provider}:{model}", api_base=base, api_key="k", **kw)


def _events():
    tracker, events = UsageTracker(), []
    tracker.subscribe(events.append)
    return tracker, events


@pytest.mark.parametrize(
    ("provider", "model", "path"),
    [
        ("openai", "text-embedding-3-small", "/v1/embeddings"),
        ("vllm", "bge-small", "/v1/embeddings"),
        ("gemini", "gemini-embedding-001", "/v1beta/models/gemini-embedding-001:batchEmbedContents"),
        ("ollama", "nomic-embed-text", "/api/embed"),
    ],
)
async def test_every_embedding_provider_embeds_accounts_and_prices(mock, provider, model, path):
    a = _adapter(mock, provider, model)
    assert a.supports_embeddings
    tracker, events = _events()
    budget = BudgetTracker(total=10_000)
    resp = await a.aembed(TEXTS, RunConfig(budget_tracker=budget, usage_tracker=tracker), dimensions=16)
    assert isinstance(resp, EmbeddingResponse)
    assert len(resp.vectors) == 3 and resp.dimensions == 16
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-5) for v in resp.vectors)
    assert resp.usage.input_tokens == MOCK_TOKENS and resp.usage.output_tokens == 0
    assert not resp.estimated  # Gemini's count comes from its count endpoint
    assert await budget.aremaining() == 10_000 - MOCK_TOKENS
    (event,) = events
    assert (event.input_tokens, event.output_tokens, event.success) == (MOCK_TOKENS, 0, True)
    assert event.cost_usd == resp.cost_usd
    if provider == "openai":
        assert resp.cost_usd == Decimal("0.02") * MOCK_TOKENS / 1_000_000  # text-embedding-3-small input price
    sent = [r for r in mock.requests if r.get("kind") == "embeddings"][-1]
    assert sent["path"] == path and sent["auth"] == (provider != "ollama")
    dims = sent["body"]["requests"][0]["outputDimensionality"] if provider == "gemini" else sent["body"]["dimensions"]
    assert dims == 16


async def test_same_text_same_vector_and_a_string_is_one_text(mock):
    a = _adapter(mock, "openai", "text-embedding-3-small")
    one = await a.aembed("the lazy dog")
    many = await a.aembed(TEXTS)
    assert one.vectors == [many.vectors[2]] and one.dimensions == 64


def test_the_sync_facade_matches_the_async_call():
    with MockServer.run_in_thread() as mock:
        a = _adapter(mock, "ollama", "nomic-embed-text")
        resp = a.embed(TEXTS)
    assert len(resp.vectors) == 3 and resp.usage.input_tokens == MOCK_TOKENS


async def test_a_reply_without_usage_is_billed_the_bound_and_marked_estimated(mock):
    mock.script(provider="gemini", fault="malformed")  # the embedding reply: cut in half
    a = _adapter(mock, "gemini", "gemini-embedding-001")
    with pytest.raises(LLMProviderUnavailableError):
        await a.aembed(TEXTS)
    # no count in the reply and none from the count endpoint: the bound is billed, marked estimated
    a._gemini_count = _no_count  # type: ignore[method-assign]
    tracker, events = _events()
    resp = await a.aembed(TEXTS, RunConfig(usage_tracker=tracker))
    assert resp.estimated and events[0].estimated
    assert resp.usage.input_tokens == sum(len(t.encode()) + 4 for t in TEXTS)


async def _no_count(texts, config):
    return None


async def test_failures_release_the_reservation_and_publish_one_failed_event(mock):
    mock.script(error="rate_limit", retry_after=2)
    a = _adapter(mock, "openai", "text-embedding-3-small")
    budget = BudgetTracker(total=1000)
    tracker, events = _events()
    with pytest.raises(LLMRateLimitError) as info:
        await a.aembed(TEXTS, RunConfig(budget_tracker=budget, usage_tracker=tracker))
    assert info.value.retry_after == 2
    assert await budget.aremaining() == 1000
    (event,) = events
    assert not event.success and event.input_tokens == 0 and event.error_type == "LLMRateLimitError"


async def test_a_budget_that_cannot_fit_refuses_before_any_request(mock):
    a = _adapter(mock, "openai", "text-embedding-3-small")
    budget = BudgetTracker(total=5)  # under the bound, and under the exact (tiktoken) count too
    n = len(mock.requests)
    with pytest.raises(LLMBudgetExceededError):
        await a.aembed(TEXTS, RunConfig(budget_tracker=budget))
    assert len(mock.requests) == n


async def test_a_usd_budget_reserves_the_input_price(mock):
    a = _adapter(mock, "openai", "text-embedding-3-small")
    budget = BudgetTracker(total_usd="0.01")
    resp = await a.aembed(TEXTS, RunConfig(budget_tracker=budget))
    assert await budget.aremaining_usd() == Decimal("0.01") - resp.cost_usd


@pytest.mark.parametrize("bad", [[], [1, 2], [[1, 2]], None])
async def test_bad_input_is_a_typed_error_before_any_request(mock, bad):
    a = _adapter(mock, "openai", "text-embedding-3-small")
    with pytest.raises(LLMInvalidRequestError):
        await a.aembed(bad)
    with pytest.raises(LLMInvalidRequestError):
        await a.aembed("x", dimensions=0)
    assert not [r for r in mock.requests if r.get("kind") == "embeddings"]


async def test_providers_without_an_embedding_api_raise_a_capability_error(mock):
    a = create_adapter("anthropic:claude-haiku-4-5", api_base=mock.url, api_key="k")
    assert not a.supports_embeddings
    with pytest.raises(LLMCapabilityError, match="cannot embed"):
        await a.aembed("x")
    fake = create_adapter("fake:echo")
    with pytest.raises(LLMCapabilityError):
        await fake.aembed("x")
    assert not mock.requests


async def test_the_local_provider_says_why_it_cannot_embed():
    pytest.importorskip("llama_cpp")
    a = create_adapter("local")
    with pytest.raises(LLMCapabilityError, match="no packaged GGUF embedding model"):
        await a.aembed("x")


async def test_a_router_passes_over_deployments_that_cannot_embed_and_falls_back(mock):
    tracker, events = _events()
    router = Router(
        {
            "embed": [
                {"model": "anthropic:claude-x", "api_base": mock.url, "api_key": "k", "name": "chat-only"},
                {"model": "openai:broken-embed", "api_base": mock.openai_base, "api_key": "k", "name": "broken"},
            ],
            "backup": [{"model": "ollama:nomic-embed-text", "api_base": mock.url, "name": "ollama"}],
        },
        fallbacks={"embed": ["backup"]},
        strategy="ordered",
        num_retries=0,
    )
    mock.script(model="broken-embed", error="server", times=1)
    resp = await router.aembed(TEXTS, RunConfig(model_name="embed", usage_tracker=tracker))
    assert resp.provider == "ollama" and len(resp.vectors) == 3
    # one event per attempt that reached a provider: the failed one and the answer (the chat-only is skipped)
    assert [(e.deployment, e.success) for e in events] == [("broken", False), ("ollama", True)]
    assert router.embedding_deployments("embed") == ["broken", "ollama"]
    view = await router.for_group("backup").aembed("x")
    assert view.provider == "ollama"


async def test_a_router_of_chat_only_deployments_raises_the_capability_error(mock):
    router = Router({"chat": [{"model": "anthropic:claude-x", "api_base": mock.url, "api_key": "k"}]})
    with pytest.raises(LLMCapabilityError):
        await router.aembed("x")
