"""The official openai SDK (sync, async, streaming) as a client of a running gateway."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, BETA_KEY, GatewayProc, base_config

USER = [{"role": "user", "content": "hello there friend"}]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    cfg = base_config(mock, tmp_path_factory.mktemp("sdk"))
    cfg["router"]["groups"]["priced"] = [{"model": "openai:gpt-4o-mini", "name": "p-mini"}]  # genai-prices knows it
    g = GatewayProc(cfg, tmp_path_factory.mktemp("sdk-run")).start()
    yield g
    g.stop()


def test_sync_completion(client, mock):
    r = client.chat.completions.create(model="plain", messages=USER, max_tokens=50)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "mock reply to: hello there friend"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-plain"
    assert r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 6 and r.usage.total_tokens == 10


def test_sync_raw_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="plain", messages=USER)
    assert raw.headers["x-llm-provider"] == "openai"
    assert raw.headers["x-llm-model"] == "gpt-plain"
    assert raw.headers["x-request-id"]
    assert raw.parse().choices[0].message.content


async def test_async_completion_concurrent(gw):
    import asyncio

    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
        rs = await asyncio.gather(
            *[
                c.chat.completions.create(model="fast", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(20)
            ]
        )
    assert [r.choices[0].message.content for r in rs] == [f"mock reply to: n{i}" for i in range(20)]
    assert all(r.model == "qwen-fast" for r in rs)


def test_stream_with_include_usage(client):
    stream = client.chat.completions.create(
        model="plain", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply to: hello there friend"
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 6)
    assert all(c.usage is None for c in chunks[:-1])


def test_streamed_cost_rides_in_the_final_usage_chunk_and_the_sdk_parses_it(client):
    stream = client.chat.completions.create(
        model="priced", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    last = list(stream)[-1]
    assert last.choices == [] and last.usage.total_tokens == 10  # the SDK's own model, parsed as usual
    streamed = Decimal(last.usage.model_extra["cost_usd"])  # the extension field, kept as an extra
    raw = client.chat.completions.with_raw_response.create(model="priced", messages=USER)
    assert raw.parse().usage.total_tokens == 10
    assert streamed == Decimal(raw.headers["x-llm-cost-usd"]) > 0  # the same call costs the same either way
    unpriced = list(
        client.chat.completions.create(
            model="plain", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )[-1]
    assert unpriced.usage.model_extra["cost_usd"] is None


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="plain", messages=USER, stream=True))
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "mock reply to: hello there friend"


async def test_async_stream(gw):
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="quality", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        parts, usage = [], None
        async for ch in stream:
            if ch.choices and ch.choices[0].delta.content:
                parts.append(ch.choices[0].delta.content)
            if ch.usage:
                usage = ch.usage
    assert "".join(parts) == "mock reply to: hello there friend"
    assert usage is not None and usage.total_tokens > 0


def test_tools_and_response_format_pass_through(client, mock):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    mock.script(MockReply(model="gpt-plain", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    r = client.chat.completions.create(model="plain", messages=USER, tools=tools, tool_choice="auto")
    tc = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert tc[0].function.name == "get_weather" and json.loads(tc[0].function.arguments) == {"city": "Oslo"}
    sent = mock.last_request
    assert sent["body"]["tools"] == tools

    r = client.chat.completions.create(model="plain", messages=USER, response_format={"type": "json_object"})
    assert mock.last_request["body"]["response_format"] == {"type": "json_object"}


def test_models_list_is_scoped_to_the_key(gw):
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY) as c:
        ids = {m.id for m in c.models.list()}
    assert {"quality", "fast", "plain", "fake", "gpt"} <= ids
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=BETA_KEY) as c:
        ids = {m.id for m in c.models.list()}
    assert ids == {"fast", "plain", "gpt", "fake"}


def test_sdk_error_types(gw):
    with (
        openai.OpenAI(base_url=gw.url + "/v1", api_key="wrong-key-0123456789", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError) as ei,
    ):
        c.chat.completions.create(model="plain", messages=USER)
    assert ei.value.code == "invalid_api_key"
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=BETA_KEY, max_retries=0) as c:
        with pytest.raises(openai.PermissionDeniedError) as ei:
            c.chat.completions.create(model="quality", messages=USER)
        assert ei.value.code == "model_not_allowed"
        with pytest.raises(openai.NotFoundError) as ei:
            c.chat.completions.create(model="no-such-model", messages=USER)
        assert ei.value.code == "model_not_found"
        with pytest.raises(openai.UnprocessableEntityError) as ei:
            c.chat.completions.create(model="plain", messages=[{"role": "wizard", "content": "x"}])
        assert ei.value.body["param"] == "messages[0].role"


def test_sync_and_async_paths_agree(gw, client):
    import asyncio

    sync = client.chat.completions.create(model="fake", messages=USER, seed=1)

    async def go():
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY) as c:
            return await c.chat.completions.create(model="fake", messages=USER, seed=1)

    a = asyncio.run(go())
    assert sync.choices[0].message.content == a.choices[0].message.content == "echo: hello there friend"
    assert sync.usage.total_tokens == a.usage.total_tokens
