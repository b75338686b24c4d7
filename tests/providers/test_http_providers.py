"""Every HTTP provider, through its adapter, over real loopback HTTP against the shipped mock server."""

from __future__ import annotations

import asyncio
import time

import pytest

from llm_connect import (
    LLMAuthenticationError,
    LLMContextWindowExceededError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
    RunConfig,
    create_adapter,
)
from llm_connect.testing import MockReply

#: provider spec -> which mock base URL it uses
PROVIDERS = {
    "openai": ("openai:gpt-4o-mini", "openai_base", "openai"),
    "anthropic": ("anthropic:claude-haiku-4-5", "url", "anthropic"),
    "gemini": ("gemini:gemini-2.5-flash", "url", "gemini"),
    "ollama": ("ollama:llama3.2", "url", "ollama"),
    "openrouter": ("openrouter:anthropic/claude-haiku-4.5", "openai_base", "openai"),
    "vllm": ("vllm:qwen2.5", "openai_base", "openai"),
    "groq": ("groq:llama-3.1-8b-instant", "openai_base", "openai"),
}

ALL = sorted(PROVIDERS)
CORE = ["anthropic", "gemini", "ollama", "openai"]


def make(mock, name: str, **kw):
    spec, base_attr, _ = PROVIDERS[name]
    return create_adapter(spec, api_base=getattr(mock, base_attr), api_key="test-key", **kw)


def fmt(name: str) -> str:
    return PROVIDERS[name][2]


@pytest.mark.parametrize("name", ALL)
async def test_text_and_usage(mock, name):
    mock.script(MockReply(text="The sea is wide.", input_tokens=11, output_tokens=5))
    r = await make(mock, name).async_execute_prompt("Say something", RunConfig(max_tokens=50, temperature=0))
    assert r.text == "The sea is wide."
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (11, 5, 16)
    assert r.finish_reason == "stop" and r.provider == name
    assert r.latency_ms > 0
    sent = mock.last_request
    assert "Say something" in str(sent["body"])  # the prompt went out in the provider's own shape


@pytest.mark.parametrize("name", CORE)
async def test_cached_and_reasoning_tokens_are_normalised(mock, name):
    mock.script(MockReply(text="ok", input_tokens=100, output_tokens=40, cache_read_tokens=60, reasoning_tokens=30))
    u = (await make(mock, name).async_execute_prompt("x")).usage
    if name == "ollama":  # Ollama reports neither cache nor reasoning
        assert (u.input_tokens, u.output_tokens) == (100, 40)
        return
    assert u.input_tokens == 100 and u.output_tokens == 40
    assert u.cache_read_tokens == 60
    if name != "anthropic":  # Anthropic does not report thinking tokens apart
        assert u.reasoning_tokens == 30


@pytest.mark.parametrize("name", ALL)
async def test_stream_deltas_then_usage(mock, name):
    mock.script(MockReply(text="one two three four", input_tokens=7, output_tokens=4))
    chunks = [c async for c in make(mock, name).astream("count", RunConfig(max_tokens=20))]
    assert "".join(c.text for c in chunks) == "one two three four"
    assert sum(1 for c in chunks if c.text) >= 2  # really streamed
    last = chunks[-1]
    assert last.usage is not None and (last.usage.input_tokens, last.usage.output_tokens) == (7, 4)
    assert last.finish_reason == "stop"


def test_sync_stream_and_call(mock_thread):
    a = create_adapter("openai:gpt-4o-mini", api_base=mock_thread.openai_base, api_key="k")
    assert a.execute_prompt("hello").text.startswith("mock reply to: hello")
    assert "".join(c.text for c in a.stream("hello")).startswith("mock reply to: hello")


@pytest.fixture
def mock_thread():
    from llm_connect.testing import MockServer

    with MockServer.run_in_thread() as server:
        yield server


async def test_openai_stream_always_asks_for_usage(mock):
    [c async for c in make(mock, "openai").astream("x")]
    assert mock.last_request["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("name", CORE)
async def test_max_tokens_reaches_the_wire(mock, name):
    r = await make(mock, name).async_execute_prompt("a b c d e f g h i j", RunConfig(max_tokens=2))
    assert r.finish_reason == "length" and r.usage.output_tokens == 2


ERRORS = [
    ({"error": "rate_limit", "retry_after": 2}, LLMRateLimitError),
    ({"error": "auth"}, LLMAuthenticationError),
    ({"error": "bad_request"}, LLMInvalidRequestError),
    ({"error": "context_length"}, LLMContextWindowExceededError),
    ({"error": "server"}, LLMProviderUnavailableError),
    ({"error": "unavailable"}, LLMProviderUnavailableError),
    ({"error": "timeout"}, LLMTimeoutError),
    ({"fault": "reset"}, LLMProviderUnavailableError),
    ({"fault": "malformed"}, LLMProviderUnavailableError),
]


@pytest.mark.parametrize("name", CORE)
@pytest.mark.parametrize(("script", "cls"), ERRORS, ids=[f"{next(iter(s.values()))}" for s, _ in ERRORS])
async def test_every_error_class(mock, name, script, cls):
    mock.script(MockReply(**script))
    with pytest.raises(cls) as info:
        await make(mock, name).async_execute_prompt("x")
    err = info.value
    assert err.provider == PROVIDERS[name][0].split(":")[0] and err.model
    assert "test-key" not in str(err)
    if cls is LLMRateLimitError:
        assert err.retry_after == 2 and err.status_code == 429


async def test_anthropic_overloaded_529(mock):
    mock.script(MockReply(error="overloaded"))
    with pytest.raises(LLMProviderUnavailableError) as info:
        await make(mock, "anthropic").async_execute_prompt("x")
    assert info.value.status_code == 529


@pytest.mark.parametrize("name", CORE)
async def test_cut_stream_is_a_clear_error(mock, name):
    mock.script(MockReply(text="a b c d e f g h", fault="cut_stream", cut_after=4))
    got = []
    with pytest.raises(LLMProviderUnavailableError):
        async for c in make(mock, name).astream("x"):
            got.append(c.text)
    assert got  # the part before the cut was delivered


@pytest.mark.parametrize("name", CORE)
async def test_stream_errors_before_first_byte(mock, name):
    mock.script(MockReply(error="rate_limit", retry_after=1))
    with pytest.raises(LLMRateLimitError):
        [c async for c in make(mock, name).astream("x")]


@pytest.mark.parametrize("name", CORE)
async def test_timeout_propagation_leaves_nothing_running(mock, name):
    mock.script(MockReply(text="late", latency=5))
    a = make(mock, name)
    start = time.perf_counter()
    with pytest.raises(LLMTimeoutError):
        await a.async_execute_prompt("x", RunConfig(timeout=0.5))
    assert time.perf_counter() - start < 1.0
    await asyncio.sleep(0)
    # nothing of the client side is left running (the mock server's own handler tasks live on this loop too)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and "web_protocol" not in repr(t)]
    assert pending == []
    # the adapter is fine afterwards
    assert (await a.async_execute_prompt("again")).text.startswith("mock reply")


async def test_gather_over_four_adapters_takes_about_one_latency(mock):
    for name in CORE:
        mock.script(MockReply(latency=0.4, provider=fmt(name)))
    adapters = [make(mock, n) for n in CORE]
    start = time.perf_counter()
    out = await asyncio.gather(*(a.async_execute_prompt("x") for a in adapters))
    elapsed = time.perf_counter() - start
    assert all(r.text for r in out)
    assert 0.4 <= elapsed < 0.8


async def test_connection_refused_is_provider_unavailable():
    a = create_adapter("openai:gpt-4o-mini", api_base="http://127.0.0.1:9/v1", api_key="k")
    with pytest.raises(LLMProviderUnavailableError, match="cannot reach"):
        await a.async_execute_prompt("x")


async def test_keys_are_sent_the_provider_way(mock):
    for name in CORE:
        await make(mock, name).async_execute_prompt("x")
    headers = {r["format"]: r["auth_header"] for r in mock.requests if r["auth"]}
    assert headers == {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}
    assert all("test-key" not in str(r["headers"]) for r in mock.requests)


async def test_tool_calls_come_back_in_openai_shape(mock):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    for name in ("openai", "anthropic", "gemini"):
        mock.script(MockReply(tool_calls=[call], finish_reason="tool_calls"))
        r = await make(mock, name).async_execute_prompt("weather?", RunConfig(tools=tools))
        assert r.finish_reason == "tool_calls", name
        assert r.tool_calls and r.tool_calls[0]["function"]["name"] == "get_weather", name
        assert '"Oslo"' in r.tool_calls[0]["function"]["arguments"], name


@pytest.mark.parametrize("body", [b"[]", b'"ok"', b"null", b"42", b'{"choices": ["x"]}', b'{"usage": [1, 2]}'])
@pytest.mark.parametrize("stream", [False, True])
async def test_replies_in_no_known_shape_are_typed_errors(body, stream, http_route):
    from aiohttp import web

    async def odd(request):
        await request.read()
        if stream:
            return web.Response(body=b"data: " + body + b"\n\n", content_type="text/event-stream")
        return web.Response(body=body, content_type="application/json")

    base = await http_route("/v1/chat/completions", odd)
    a = create_adapter("openai:gpt-4o-mini", api_base=f"{base}/v1", api_key="sk-secret-123")
    with pytest.raises(LLMProviderUnavailableError) as info:
        if stream:
            [c async for c in a.astream("x")]
        else:
            await a.async_execute_prompt("x")
    import traceback

    assert "sk-secret-123" not in "".join(traceback.format_exception(info.value))


def test_api_base_without_a_scheme(monkeypatch):
    from llm_connect import LLMConfigurationError

    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11434")  # how Ollama's own docs write it
    assert create_adapter("ollama:llama3").api_base == "http://0.0.0.0:11434"
    with pytest.raises(LLMConfigurationError, match="http"):
        create_adapter("openai:gpt-4o-mini", api_base="ftp://host/v1", api_key="k")


async def test_a_key_read_from_a_file_with_its_newline_works(mock):
    a = create_adapter("openai:gpt-4o-mini", api_base=mock.openai_base, api_key="sk-from-file\n")
    assert (await a.async_execute_prompt("x")).text


async def test_network_errors_never_carry_the_key_in_their_chain():
    import traceback

    a = create_adapter("openai:gpt-4o-mini", api_base="http://127.0.0.1:9/v1", api_key="sk-very-secret-999")
    with pytest.raises(LLMProviderUnavailableError) as info:
        await a.async_execute_prompt("x")
    text = "".join(traceback.format_exception(info.value))
    assert "sk-very-secret-999" not in text and "sk-very-secret-999" not in repr(info.value)


async def test_openai_gets_max_completion_tokens_and_compatible_servers_max_tokens(mock):
    await make(mock, "openai").async_execute_prompt("x", RunConfig(max_tokens=7))
    body = mock.last_request["body"]
    assert body["max_completion_tokens"] == 7 and "max_tokens" not in body  # reasoning models refuse max_tokens
    await make(mock, "vllm").async_execute_prompt("x", RunConfig(max_tokens=7))
    assert mock.last_request["body"]["max_tokens"] == 7
