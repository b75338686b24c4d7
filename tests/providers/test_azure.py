"""Azure OpenAI over loopback against the mock server: URLs, credentials, content filter, 429s, pricing, budgets.

Shapes follow the Azure OpenAI REST reference (learn.microsoft.com/azure/ai-foundry/openai/reference): the
deployment path with ``?api-version=``, the v1 API, the ``api-key`` header or an Entra ID bearer token, the 400
``content_filter`` body with ``innererror.content_filter_result``, ``finish_reason: content_filter``, a 429 with
``retry-after-ms``.
"""

from __future__ import annotations

import genai_prices
import pytest

from llm_connect import (
    BudgetTracker,
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMConfigurationError,
    LLMContentFilterError,
    LLMContextWindowExceededError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    RunConfig,
    create_adapter,
)
from llm_connect.testing import MockReply, MockServer

from .conftest import genai_price

KEY = "0123456789abcdef0123456789abcdef"  # a 32-character resource key
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJjb2duaXRpdmVzZXJ2aWNlcyJ9.c2lnbmF0dXJl"
VERSION = "2024-10-21"


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch):
    for var in (
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_VERSION",
        "OPENAI_API_VERSION",
        "AZURE_OPENAI_AD_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)


def azure(mock: MockServer, deployment: str = "prod-4o", **kw):
    kw.setdefault("api_key", KEY)
    kw.setdefault("api_version", VERSION)
    kw.setdefault("models", {deployment: "gpt-4o"})
    return create_adapter(f"azure:{deployment}", api_base=mock.url, **kw)


async def test_deployment_url_api_version_and_api_key_header(mock):
    r = await azure(mock).async_execute_prompt("hello azure")
    q = mock.last_request
    assert q["path"] == "/openai/deployments/prod-4o/chat/completions"
    assert q["query"] == {"api-version": VERSION}
    assert q["auth_header"] == "api-key"
    assert q["format"] == "azure"
    assert r.text == "mock reply to: hello azure"
    assert "max_completion_tokens" not in q["body"]  # none asked for


async def test_v1_api_sends_the_deployment_as_model(mock):
    r = await azure(mock, api_version=None).async_execute_prompt("hi", RunConfig(max_tokens=50))
    q = mock.last_request
    assert q["path"] == "/openai/v1/chat/completions" and q["query"] == {}
    assert q["body"]["model"] == "prod-4o"
    assert q["body"]["max_completion_tokens"] == 50  # Azure follows OpenAI: reasoning models need it
    assert r.provider == "azure"


async def test_api_version_from_the_environment_and_v1_spelled_out(mock, monkeypatch):
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")
    await azure(mock, api_version=None).async_execute_prompt("x")
    assert mock.last_request["query"] == {"api-version": "2025-04-01-preview"}
    await azure(mock, api_version="v1").async_execute_prompt("x")
    assert mock.last_request["path"] == "/openai/v1/chat/completions"


async def test_endpoint_from_the_environment_with_its_path_trimmed(mock, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", mock.url + "/openai/v1/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    a = create_adapter("azure:prod-4o", api_version=VERSION)
    await a.async_execute_prompt("x")
    assert mock.last_request["path"] == "/openai/deployments/prod-4o/chat/completions"
    assert KEY not in repr(a)


async def test_entra_id_token_static_and_from_a_provider(mock):
    await azure(mock, api_key=None, azure_ad_token=JWT).async_execute_prompt("x")
    assert mock.last_request["auth_header"] == "authorization"
    calls = []

    async def provider() -> str:
        calls.append(1)
        return JWT

    a = azure(mock, api_key=None, azure_ad_token_provider=provider)
    await a.async_execute_prompt("x")
    assert [c.text async for c in a.astream("y")][-1] == ""
    assert len(calls) == 2  # asked before every request: tokens expire
    assert mock.last_request["auth_header"] == "authorization"


async def test_credentials_are_checked_for_shape(mock):
    with pytest.raises(LLMAuthenticationError) as info:
        await azure(mock, api_key="not-a-key").async_execute_prompt("x")
    assert info.value.status_code == 401 and info.value.body["error"]["code"] == "401"
    with pytest.raises(LLMAuthenticationError):
        await azure(mock, api_key=None, azure_ad_token="opaque").async_execute_prompt("x")
    mock.require_key = "f" * 32
    with pytest.raises(LLMAuthenticationError):
        await azure(mock).async_execute_prompt("x")
    assert (await azure(mock, api_key="f" * 32).async_execute_prompt("x")).text


async def test_missing_api_version_on_the_deployment_path_is_azures_404(mock):
    import aiohttp

    async with aiohttp.ClientSession() as s:
        url = f"{mock.url}/openai/deployments/d/chat/completions"
        async with s.post(url, json={"messages": [{"role": "user", "content": "x"}]}, headers={"api-key": KEY}) as r:
            assert r.status == 404
            assert (await r.json())["error"] == {"code": "404", "message": "Resource not found"}


async def test_content_filter_on_the_prompt_is_a_typed_error(mock):
    mock.script(MockReply(status=400, error_code="content_filter"))
    with pytest.raises(LLMContentFilterError) as info:
        await azure(mock).async_execute_prompt("x")
    inner = info.value.body["error"]["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["violence"] == {"filtered": True, "severity": "high"}


async def test_content_filter_on_the_completion_is_a_finish_reason(mock):
    mock.script(MockReply(text="partial", finish_reason="content_filter"), MockReply(finish_reason="content_filter"))
    r = await azure(mock).async_execute_prompt("x")
    assert r.finish_reason == "content_filter"
    assert r.raw["choices"][0]["content_filter_results"]["violence"]["filtered"] is True
    assert r.raw["prompt_filter_results"][0]["prompt_index"] == 0
    chunks = [c async for c in azure(mock).astream("x")]
    assert chunks[-1].finish_reason == "content_filter"


async def test_429_uses_retry_after_ms(mock):
    mock.script(MockReply(status=429, retry_after=1.25))
    with pytest.raises(LLMRateLimitError) as info:
        await azure(mock).async_execute_prompt("x")
    assert info.value.retry_after == 1.25  # retry-after-ms: 1250, finer than Retry-After
    assert info.value.body["error"]["code"] == "429"


@pytest.mark.parametrize(
    ("script", "cls"),
    [
        (MockReply(error="not_found"), LLMInvalidRequestError),
        (MockReply(error="context_length"), LLMContextWindowExceededError),
        (MockReply(error="server"), LLMProviderUnavailableError),
        (MockReply(error="unavailable"), LLMProviderUnavailableError),
    ],
)
async def test_error_mapping_per_status(mock, script, cls):
    mock.script(script)
    with pytest.raises(cls):
        await azure(mock).async_execute_prompt("x")


async def test_price_is_genai_prices_azure_for_the_mapped_model(mock):
    mock.script(MockReply(input_tokens=1200, output_tokens=300, cache_read_tokens=1000))
    r = await azure(mock).async_execute_prompt("x")
    assert r.usage.cache_read_tokens == 1000
    assert r.cost_usd == genai_price("azure", "gpt-4o", r.usage)
    mock.script(MockReply(reported_model="gpt-4o-mini-2024-07-18", input_tokens=100, output_tokens=10))
    r = await azure(mock).async_execute_prompt("x")  # the model the reply names wins over the mapping
    assert r.cost_usd == genai_price("azure", "gpt-4o-mini-2024-07-18", r.usage)


async def test_stream_usage_and_price(mock):
    chunks = [c async for c in azure(mock).astream("count these words")]
    assert "".join(c.text for c in chunks) == "mock reply to: count these words"
    last = chunks[-1]
    assert last.usage is not None and last.usage.output_tokens == 6
    assert last.cost_usd == genai_price("azure", "gpt-4o", last.usage)
    assert mock.last_request["body"]["stream_options"] == {"include_usage": True}


async def test_usd_budget_reserves_at_the_mapped_price_and_settles_exactly(mock):
    tracker = BudgetTracker(total_usd="1")
    r = await azure(mock).async_execute_prompt("x", RunConfig(max_tokens=100, budget_tracker=tracker))
    assert tracker.spent_usd == r.cost_usd > 0
    tiny = BudgetTracker(total_usd="0.0000001")  # less than the cheapest answer at gpt-4o prices
    with pytest.raises(LLMBudgetExceededError):
        await azure(mock).async_execute_prompt("x", RunConfig(max_tokens=100, budget_tracker=tiny))


async def test_unmapped_deployment_is_unpriced_but_served(mock):
    r = await azure(mock, "my-custom", models=None).async_execute_prompt("x")
    assert r.text and r.cost_usd is None


def test_sync_call_and_stream(monkeypatch):
    with MockServer.run_in_thread() as srv:
        a = azure(srv)
        assert a.execute_prompt("sync hello").text == "mock reply to: sync hello"
        assert "".join(c.text for c in a.stream("sync stream")) == "mock reply to: sync stream"


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"api_key": None}, "no credentials"),
        ({"api_version": ""}, "api_version"),
        ({"models": ["gpt-4o"]}, "models"),
        ({"api_key": None, "azure_ad_token_provider": "token"}, "callable"),
    ],
)
def test_configuration_errors_are_clear(kw, needle):
    base = {"api_key": KEY, "api_version": VERSION, "api_base": "https://r.openai.azure.com"}
    with pytest.raises(LLMConfigurationError, match=needle):
        create_adapter("azure:d", **{**base, **kw})


def test_no_endpoint_names_the_variable():
    with pytest.raises(LLMConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        create_adapter("azure:d", api_key=KEY)


async def test_embeddings_go_to_the_deployment_with_the_api_version(mock):
    a = azure(mock, "emb3", models={"emb3": "text-embedding-3-small"})
    r = await a.aembed(["hello world"])
    assert mock.last_request["path"] == "/openai/deployments/emb3/embeddings"
    assert mock.last_request["query"] == {"api-version": VERSION}
    assert (
        r.vectors
        and r.cost_usd
        == genai_prices.calc_price(
            genai_prices.Usage(input_tokens=r.usage.input_tokens), "text-embedding-3-small", provider_id="azure"
        ).total_price
    )
