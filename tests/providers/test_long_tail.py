"""The OpenAI-compatible long tail as registry rows: documented base URLs and key variables, genai-prices ids,
quirks as data (DeepSeek reasoning_content, xAI reasoning beside completion tokens, Perplexity citations, Cohere
without stream_options), exact prices against ``genai_prices.calc_price``, errors per status."""

from __future__ import annotations

import genai_prices
import pytest
from aiohttp import web

from llm_connect import (
    LLMAuthenticationError,
    LLMContextWindowExceededError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    RunConfig,
    create_adapter,
)
from llm_connect.registry import HTTP_PROVIDERS, check_spec
from llm_connect.testing import MockReply
from llm_connect.usage import Pricing
from llm_connect.wire import openai_chat as W

from .conftest import genai_price

#: name -> (documented base URL, key variable, a model id the provider serves that genai-prices prices, or None)
ROWS = {
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY", "mistral-large-latest"),
    "deepseek": ("https://api.deepseek.com", "DEEPSEEK_API_KEY", "deepseek-chat"),
    "xai": ("https://api.x.ai/v1", "XAI_API_KEY", "grok-4-0709"),
    "fireworks": (
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        "accounts/fireworks/models/deepseek-v3p2",
    ),
    "cerebras": ("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY", "llama-3.3-70b"),
    "perplexity": ("https://api.perplexity.ai", "PERPLEXITY_API_KEY", "sonar-pro"),
    "deepinfra": ("https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY", None),
    "moonshot": ("https://api.moonshot.ai/v1", "MOONSHOT_API_KEY", "kimi-k2-0905-preview"),
    "zai": ("https://api.z.ai/api/paas/v4", "ZAI_API_KEY", "glm-4.6"),
    "nebius": ("https://api.tokenfactory.nebius.com/v1", "NEBIUS_API_KEY", "meta-llama/Llama-3.3-70B-Instruct"),
    "sambanova": ("https://api.sambanova.ai/v1", "SAMBANOVA_API_KEY", None),
    "hyperbolic": ("https://api.hyperbolic.xyz/v1", "HYPERBOLIC_API_KEY", "meta-llama/Llama-3.3-70B-Instruct"),
    "novita": ("https://api.novita.ai/openai/v1", "NOVITA_API_KEY", "deepseek/deepseek-r1"),
    "cohere": ("https://api.cohere.ai/compatibility/v1", "COHERE_API_KEY", "command-a-03-2025"),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_has_the_documented_base_url_and_key_variable(name):
    spec = HTTP_PROVIDERS[name]
    base, key, _ = ROWS[name]
    assert (spec.wire, spec.base_url, spec.key_env[0], spec.key_required) == ("openai_chat", base, key, True)
    assert spec.docs_url.startswith("https://") and spec.capabilities
    assert check_spec(f"{name}:m") == name


@pytest.mark.parametrize("name", sorted(ROWS))
def test_genai_prices_has_the_provider_and_prices_its_model(name):
    spec = HTTP_PROVIDERS[name]
    model = ROWS[name][2]
    snapshot = genai_prices.data_snapshot.get_snapshot()
    if spec.genai_prices_id is None:
        assert model is None
        assert Pricing().price(name, "any-model", W.parse_usage({"prompt_tokens": 1})) is None
        return
    provider = next(p for p in snapshot.providers if p.id == spec.genai_prices_id)
    assert provider.models
    usage = W.parse_usage({"prompt_tokens": 2000, "completion_tokens": 300})
    assert Pricing().price(name, model, usage) == genai_price(spec.genai_prices_id, model, usage)


def test_aliases():
    assert check_spec("grok:grok-4") == "xai" and check_spec("z.ai:glm-4.6") == "zai"
    assert check_spec("moonshotai:kimi-k2") == "moonshot"


# -- official payload shapes ------------------------------------------------------------------------------------

DEEPSEEK = {  # api-docs.deepseek.com: reasoning_content beside content; cache hits at the top of usage
    "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
    "object": "chat.completion",
    "created": 1737000000,
    "model": "deepseek-reasoner",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "9.11 < 9.8", "reasoning_content": "Compare 0.11 and 0.8 ..."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 400,
        "total_tokens": 1600,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "prompt_cache_hit_tokens": 1024,
        "prompt_cache_miss_tokens": 176,
        "completion_tokens_details": {"reasoning_tokens": 350},
    },
    "system_fingerprint": "fp_7e73fd9a08",
}

XAI = {  # docs.x.ai: completion_tokens does not include reasoning_tokens
    "id": "a3d1008e-4544-40d4-d075-11527e794e4a",
    "object": "chat.completion",
    "created": 1752000000,
    "model": "grok-4-0709",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "101 is prime."}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 700,
        "completion_tokens": 12,
        "total_tokens": 1012,
        "prompt_tokens_details": {"text_tokens": 700, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 640},
        "completion_tokens_details": {"reasoning_tokens": 300, "audio_tokens": 0},
        "num_sources_used": 0,
    },
}

PERPLEXITY = {  # docs.perplexity.ai chat completions: citations and search_results at the top level
    "id": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
    "model": "sonar-pro",
    "created": 1752000000,
    "object": "chat.completion",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "It rained [1]."}}],
    "citations": ["https://example.com/weather"],
    "search_results": [{"title": "Weather", "url": "https://example.com/weather", "date": "2025-07-01"}],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 40,
        "total_tokens": 52,
        "search_context_size": "low",
    },
}


def test_deepseek_reasoning_content_and_cache_hits():
    p = W.parse_response(DEEPSEEK)
    assert p.reasoning == "Compare 0.11 and 0.8 ..." and p.text == "9.11 < 9.8"
    assert (p.usage.cache_read_tokens, p.usage.reasoning_tokens, p.usage.output_tokens) == (1024, 350, 400)
    assert Pricing().price("deepseek", "deepseek-reasoner", p.usage) == genai_price(
        "deepseek", "deepseek-reasoner", p.usage
    )


def test_deepseek_cache_hits_without_the_openai_details():
    usage = dict(DEEPSEEK["usage"])
    usage.pop("prompt_tokens_details")
    assert W.parse_usage(usage).cache_read_tokens == 1024


async def _serve(http_route, body: dict, path: str = "/v1/chat/completions") -> str:
    async def handler(request: web.Request) -> web.Response:
        req = await request.json()
        if req.get("stream"):
            import orjson

            chunk = {**body, "object": "chat.completion.chunk"}
            choice = body["choices"][0]
            chunk["choices"] = [{"index": 0, "delta": choice["message"], "finish_reason": choice["finish_reason"]}]
            frames = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
            return web.Response(body=frames, content_type="text/event-stream")
        return web.json_response(body)

    return await http_route(path, handler)


async def test_xai_reasoning_tokens_are_added_to_output(http_route):
    base = await _serve(http_route, XAI)
    a = create_adapter("xai:grok-4-0709", api_key="xai-test", api_base=base + "/v1")
    r = await a.async_execute_prompt("is 101 prime?")
    assert (r.usage.output_tokens, r.usage.reasoning_tokens, r.usage.cache_read_tokens) == (312, 300, 640)
    # genai-prices' x-ai extractor counts reasoning into output the same way
    extracted = genai_prices.extract_usage(XAI, provider_id="x-ai", api_flavor="chat")
    assert extracted.usage.output_tokens == 312
    assert r.cost_usd == genai_prices.calc_price(extracted.usage, "grok-4-0709", provider_id="x-ai").total_price
    last = [c async for c in a.astream("again")][-1]
    assert last.usage.output_tokens == 312


async def test_perplexity_citations_are_kept_and_priced_with_the_request_fee(http_route):
    base = await _serve(http_route, PERPLEXITY, "/chat/completions")
    a = create_adapter("perplexity:sonar-pro", api_key="pplx-test", api_base=base)
    r = await a.async_execute_prompt("weather?")
    assert r.provider_fields == {"citations": PERPLEXITY["citations"], "search_results": PERPLEXITY["search_results"]}
    assert r.cost_usd == genai_price("perplexity", "sonar-pro", r.usage)  # $14 per 1000 requests included
    last = [c async for c in a.astream("weather?")][-1]
    assert last.provider_fields["citations"] == ["https://example.com/weather"]


async def test_deepseek_reasoning_reaches_the_response(http_route):
    base = await _serve(http_route, DEEPSEEK)
    r = await create_adapter("deepseek:deepseek-reasoner", api_key="sk-ds", api_base=base + "/v1").async_execute_prompt(
        "9.11 or 9.8?"
    )
    assert r.reasoning.startswith("Compare") and r.usage.cache_read_tokens == 1024
    assert r.cost_usd == genai_price("deepseek", "deepseek-reasoner", r.usage)


async def test_cohere_gets_no_stream_options(mock):
    a = create_adapter("cohere:command-a-03-2025", api_key="co-test", api_base=mock.openai_base)
    chunks = [c async for c in a.astream("hi")]
    assert "stream_options" not in mock.last_request["body"] and mock.last_request["body"]["stream"] is True
    assert chunks[-1].usage is not None  # the stream's own usage, or an estimate from above


# -- over loopback: every row, usage and errors ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ROWS))
async def test_every_row_calls_the_chat_path_with_a_bearer_key(mock, name):
    a = create_adapter(f"{name}:m", api_key="test-key", api_base=mock.openai_base)
    r = await a.async_execute_prompt("hello", RunConfig(max_tokens=20))
    q = mock.last_request
    assert q["path"] == "/v1/chat/completions" and q["auth_header"] == "authorization"
    assert q["body"]["max_tokens"] == 20 and r.provider == name
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("script", "cls"),
    [
        (MockReply(error="auth"), LLMAuthenticationError),
        (MockReply(error="rate_limit", retry_after=3), LLMRateLimitError),
        (MockReply(error="context_length"), LLMContextWindowExceededError),
        (MockReply(error="server"), LLMProviderUnavailableError),
    ],
)
@pytest.mark.parametrize("name", ["mistral", "deepseek", "perplexity", "cohere"])
async def test_errors_per_status(mock, name, script, cls):
    mock.script(script)
    with pytest.raises(cls) as info:
        await create_adapter(f"{name}:m", api_key="k", api_base=mock.openai_base).async_execute_prompt("x")
    assert info.value.provider == name
    if cls is LLMRateLimitError:
        assert info.value.retry_after == 3


def test_a_missing_key_names_the_variable(monkeypatch):
    from llm_connect import LLMConfigurationError

    monkeypatch.delenv("NEBIUS_API_KEY", raising=False)
    with pytest.raises(LLMConfigurationError, match="NEBIUS_API_KEY"):
        create_adapter("nebius:meta-llama/Llama-3.3-70B-Instruct")


def test_docs_table_lists_every_http_provider_with_its_base_url_and_key():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "providers.md").read_text()
    for name, spec in HTTP_PROVIDERS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        assert (spec.base_url or "endpoint") in row and all(f"`{k}`" in row for k in spec.key_env), name
