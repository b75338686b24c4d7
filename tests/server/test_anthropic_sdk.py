"""The official anthropic SDK (sync, async, streaming, tools, thinking, errors) as a client of a running gateway,
with the mock server as upstream in both directions: Anthropic requests translated to an OpenAI upstream, and
passed through to an Anthropic upstream; and the openai SDK against an Anthropic upstream."""

from __future__ import annotations

import asyncio
import base64

import anthropic
import openai
import orjson
import pytest

from llm_connect.server import anthropic_schemas as schemas
from llm_connect.testing import MockReply

from .conftest import ACME_KEY, BETA_KEY, LIMITED_KEY, PROVIDER_KEY, GatewayProc, base_config, http

USER = [{"role": "user", "content": "hello there friend"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    cfg = base_config(mock, tmp_path_factory.mktemp("anthropic-sdk"))
    cfg["router"]["groups"]["claude"] = [
        {"model": "anthropic:claude-c", "name": "c-anthropic", "api_base": mock.anthropic_base, "api_key": PROVIDER_KEY}
    ]
    cfg["router"]["groups"]["down"] = [{"model": "openai:gpt-down", "name": "d-openai"}]
    cfg["tenants"]["tiny"] = {"budget": {"tokens": 30}}
    cfg["api_keys"].append({"name": "tiny", "key": "tiny-key-0123456789abcdef-xyz", "tenant": "tiny"})
    g = GatewayProc(cfg, tmp_path_factory.mktemp("anthropic-sdk-run")).start()
    yield g
    g.stop()


@pytest.fixture
def client(gw, mock):
    mock.reset()
    with anthropic.Anthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0) as c:
        yield c
    mock.reset()


def upstream(mock, path="/v1/messages"):
    return [r for r in mock.requests if r["path"].endswith(path)][-1]


# -- JSON, both directions ------------------------------------------------------------------------------------
def test_translated_to_an_openai_upstream(client, mock):
    m = client.messages.create(
        model="plain", max_tokens=50, system="be brief", messages=USER, extra_body={"temperature": 0.3}
    )
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.model == "gpt-plain"
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == "mock reply to: hello there friend"
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert (m.usage.input_tokens, m.usage.output_tokens) == (7, 6)
    sent = upstream(mock, "/chat/completions")["body"]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, *USER]
    assert sent["model"] == "gpt-plain" and sent["max_completion_tokens"] == 50 and sent["temperature"] == 0.3


def test_passed_through_to_an_anthropic_upstream(client, mock):
    body = {
        "model": "claude",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "service_tier": "auto",
    }
    sdk_args = {k: v for k, v in body.items() if k not in ("top_k", "service_tier")}
    extra = {"top_k": 5, "service_tier": "auto"}  # fields this SDK version no longer takes as arguments
    raw = client.beta.messages.with_raw_response.create(
        **sdk_args, extra_body=extra, betas=["interleaved-thinking-2025-05-14"]
    )
    m = raw.parse()
    assert m.model == "claude-c" and m.content[0].text == "mock reply to: hi"
    assert raw.headers["request-id"] and raw.headers["x-llm-provider"] == "anthropic"
    rec = upstream(mock)
    assert rec["body"] == {**{k: v for k, v in body.items()}, "model": "claude-c"}  # every field kept, model mapped
    assert rec["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert rec["headers"]["anthropic-version"] == raw.http_request.headers["anthropic-version"]  # the client's


def test_cache_tokens_keep_anthropics_convention_both_ways(client, mock):
    mock.script(MockReply(model="claude-c", input_tokens=100, cache_read_tokens=60, cache_write_tokens=30))
    m = client.messages.create(model="claude", max_tokens=20, messages=USER)
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (10, 60, 30)
    mock.script(MockReply(model="gpt-plain", input_tokens=100, cache_read_tokens=60))
    m = client.messages.create(model="plain", max_tokens=20, messages=USER)
    # the core counts cache reads inside input_tokens; Anthropic's input_tokens leaves them out
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (40, 60, 0)


def test_responses_are_what_the_models_describe(gw):
    for model in ("plain", "claude"):
        status, headers, raw = http(
            "POST",
            gw.url + "/v1/messages",
            {"model": model, "max_tokens": 9, "messages": USER},
            {"x-api-key": ACME_KEY},
        )
        assert status == 200 and headers["request-id"] == headers["x-request-id"]
        schemas.AnthropicMessageResponse.model_validate(orjson.loads(raw))
    status, _, raw = http(
        "POST", gw.url + "/v1/messages", {"model": "plain", "messages": USER}, {"x-api-key": ACME_KEY}
    )
    assert status == 400
    err = schemas.AnthropicError.model_validate(orjson.loads(raw))
    assert err.error.type == "invalid_request_error" and err.error.message.startswith("max_tokens")


async def test_async_client_concurrent_on_both_upstreams(gw):
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0) as c:
        calls = [
            c.messages.create(model=m, max_tokens=30, messages=[{"role": "user", "content": f"n{i}"}])
            for i in range(10)
            for m in ("plain", "claude")
        ]
        out = await asyncio.gather(*calls)
    assert [r.content[0].text for r in out] == [f"mock reply to: n{i}" for i in range(10) for _ in range(2)]
    assert {r.model for r in out} == {"gpt-plain", "claude-c"}


def test_bearer_auth_and_beta_headers_are_accepted(gw):
    with anthropic.Anthropic(base_url=gw.url, auth_token=ACME_KEY, api_key=None, max_retries=0) as c:
        m = c.messages.create(
            model="plain", max_tokens=9, messages=USER, extra_headers={"anthropic-beta": "anything-2099-01-01"}
        )
    assert m.content[0].text


# -- streaming ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["plain", "claude"])
def test_stream_event_sequence(client, model):
    events = list(client.messages.create(model=model, max_tokens=50, messages=USER, stream=True))
    kinds = [e.type for e in events if e.type != "ping"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1:-2] == ["content_block_start"] + ["content_block_delta"] * 6 + ["content_block_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "mock reply to: hello there friend"
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 6
    assert delta.usage.input_tokens == 4


async def test_async_stream_helper(gw):
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0) as c:
        for model in ("plain", "claude"):
            async with c.messages.stream(model=model, max_tokens=50, messages=USER) as s:
                text = "".join([t async for t in s.text_stream])
                final = await s.get_final_message()
            assert text == final.content[0].text == "mock reply to: hello there friend"
            assert final.usage.output_tokens == 6


def test_an_error_inside_a_stream_is_an_anthropic_error_event(client, mock):
    for model, fmt_model in (("plain", "gpt-plain"), ("claude", "claude-c")):
        mock.script(MockReply(model=fmt_model, fault="stream_error", cut_after=3))
        with pytest.raises(anthropic.APIStatusError) as info:
            list(client.messages.create(model=model, max_tokens=50, messages=USER, stream=True))
        assert info.value.body["type"] == "error"
        assert info.value.body["error"]["type"] in ("overloaded_error", "api_error")


# -- tools ----------------------------------------------------------------------------------------------------
def test_tools_translated_both_ways(client, mock):
    mock.script(MockReply(model="gpt-plain", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    m = client.messages.create(
        model="plain",
        max_tokens=50,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    sent = upstream(mock, "/chat/completions")["body"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": WEATHER["description"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert m.stop_reason == "tool_use"
    (use,) = m.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    # the next turn: tool_use in the history, tool_result answered
    client.messages.create(
        model="plain",
        max_tokens=50,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "sunny", "is_error": False},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
    )
    sent = upstream(mock, "/chat/completions")["body"]
    assert sent["tool_choice"] == "required"
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": use.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        ],
    }
    assert sent["messages"][2:] == [
        {"role": "tool", "tool_call_id": use.id, "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]


@pytest.mark.parametrize(("model", "fmt_model"), [("plain", "gpt-plain"), ("claude", "claude-c")])
def test_streamed_tool_use(client, mock, model, fmt_model):
    mock.script(MockReply(model=fmt_model, tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    with client.messages.stream(model=model, max_tokens=50, messages=USER, tools=[WEATHER]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}


# -- thinking -------------------------------------------------------------------------------------------------
def test_thinking_passed_through_with_its_signature(client, mock):
    mock.script(MockReply(model="claude-c", thinking="let me think", text="42", reasoning_tokens=3, repeat=True))
    try:
        m = client.messages.create(
            model="claude", max_tokens=2000, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
        )
        with client.messages.stream(
            model="claude", max_tokens=2000, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
        ) as s:
            streamed = s.get_final_message()
    finally:
        mock.clear_scripts()
    for msg in (m, streamed):
        assert [b.type for b in msg.content] == ["thinking", "text"]
        assert msg.content[0].thinking == "let me think" and msg.content[0].signature.startswith("sig-")
    assert streamed.content[0].signature == m.content[0].signature
    assert upstream(mock)["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_thinking_translated_to_reasoning_effort(client, mock):
    mock.script(MockReply(model="gpt-plain", thinking="hmm, let me see", text="42", repeat=True))
    history = [
        {"role": "user", "content": "q1"},
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "old", "signature": "s"}, {"type": "text", "text": "a1"}],
        },
        {"role": "user", "content": "q2"},
    ]
    try:
        m = client.messages.create(
            model="plain", max_tokens=9000, messages=history, thinking={"type": "enabled", "budget_tokens": 8000}
        )
        events = list(
            client.messages.create(
                model="plain",
                max_tokens=9000,
                messages=history,
                stream=True,
                thinking={"type": "enabled", "budget_tokens": 2000},
            )
        )
    finally:
        mock.clear_scripts()
    assert [b.type for b in m.content] == ["thinking", "text"] and m.content[0].thinking == "hmm, let me see"
    sent = upstream(mock, "/chat/completions")["body"]
    assert sent["reasoning_effort"] == "low"  # 2000 budget tokens; the first call's 8000 asked for "medium"
    assert sent["messages"][1] == {"role": "assistant", "content": "a1"}  # the old thinking is not sent
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    thinking = "".join(
        e.delta.thinking for e in events if e.type == "content_block_delta" and e.delta.type == "thinking_delta"
    )
    assert thinking == "hmm, let me see"


# -- content translation --------------------------------------------------------------------------------------
def test_images_stop_sequences_and_system_blocks_translated(client, mock):
    png = base64.b64encode(b"\x89PNG fake").decode()
    client.messages.create(
        model="plain",
        max_tokens=20,
        system=[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        stop_sequences=["END"],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "text", "text": "what is this"},
                ],
            }
        ],
    )
    sent = upstream(mock, "/chat/completions")["body"]
    assert sent["stop"] == ["END"]
    assert sent["messages"] == [
        {"role": "system", "content": "one\n\ntwo"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": "what is this"},
            ],
        },
    ]


# -- routing --------------------------------------------------------------------------------------------------
def test_fallback_from_anthropic_to_openai_is_translated(client, mock):
    mock.script(MockReply(model="claude-q", error="overloaded"))
    m = client.messages.create(model="quality", max_tokens=20, messages=USER, thinking={"type": "adaptive"})
    assert m.model == "gpt-q" and m.content[0].text == "mock reply to: hello there friend"
    sent = upstream(mock, "/chat/completions")["body"]
    assert "thinking" not in sent and sent["messages"] == USER


def test_openai_sdk_against_an_anthropic_upstream(gw, mock):
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as c:
        r = c.chat.completions.create(model="claude", messages=USER, max_tokens=30)
        assert r.choices[0].message.content == "mock reply to: hello there friend" and r.model == "claude-c"
        stream = c.chat.completions.create(
            model="claude", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 6
    assert upstream(mock)["body"]["messages"] == USER


# -- count_tokens ---------------------------------------------------------------------------------------------
def test_count_tokens(client, mock):
    n = client.messages.count_tokens(model="claude", system="sys words", messages=USER, tools=[WEATHER])
    rec = upstream(mock, "/v1/messages/count_tokens")
    assert rec["body"] == {"model": "claude-c", "system": "sys words", "messages": USER, "tools": [WEATHER]}
    assert n.input_tokens == 7 + 1 + 8  # the mock's count, plus the margin Anthropic's estimate gets
    assert client.messages.count_tokens(model="plain", messages=USER).input_tokens > 0


# -- errors ---------------------------------------------------------------------------------------------------
def test_errors_map_to_the_sdks_exception_classes(gw, client, mock):
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="plain", max_tokens=10, messages=[{"role": "wizard", "content": "x"}])
    assert bad.value.body["error"]["message"].startswith("messages.0.role")
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="plain", max_tokens=10, messages=USER, extra_body={"temperature": 1.5})
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(model="nope", max_tokens=10, messages=USER)
    assert nf.value.body["error"]["type"] == "not_found_error" and nf.value.request_id
    with pytest.raises(anthropic.AuthenticationError) as auth:
        anthropic.Anthropic(base_url=gw.url, api_key="wrong-key-0123456789", max_retries=0).messages.create(
            model="plain", max_tokens=10, messages=USER
        )
    assert auth.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic.Anthropic(base_url=gw.url, api_key=BETA_KEY, max_retries=0).messages.create(
            model="claude", max_tokens=10, messages=USER
        )
    with pytest.raises(anthropic.ContentTooLargeError):
        client.messages.create(model="plain", max_tokens=10, messages=[{"role": "user", "content": "x" * 70_000}])
    mock.script(MockReply(model="gpt-down", error="server", repeat=True))
    try:
        with pytest.raises(anthropic.OverloadedError) as over:
            client.messages.create(model="down", max_tokens=10, messages=USER)
    finally:
        mock.clear_scripts()
    assert over.value.status_code == 529 and over.value.body["error"]["type"] == "overloaded_error"


def test_rate_limits_and_budgets_are_rate_limit_errors(gw):
    limited = anthropic.Anthropic(base_url=gw.url, api_key=LIMITED_KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as rl:
        for _ in range(5):
            limited.messages.create(model="plain", max_tokens=5, messages=USER)
    assert rl.value.response.headers["retry-after"]
    tiny = anthropic.Anthropic(base_url=gw.url, api_key="tiny-key-0123456789abcdef-xyz", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as budget:
        tiny.messages.create(model="plain", max_tokens=500, messages=[{"role": "user", "content": "w " * 40}])
    assert budget.value.body["error"]["type"] == "rate_limit_error"
    assert "budget" in budget.value.body["error"]["message"]


def test_delegation_headers_work_as_on_chat(gw):
    chain = {"X-LLM-Budget-Id": "msg-chain", "X-LLM-Budget-Tokens": "80"}
    ok = 0
    with anthropic.Anthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0, default_headers=chain) as c:
        with pytest.raises(anthropic.RateLimitError) as info:
            for _ in range(20):
                c.messages.create(model="plain", max_tokens=10, messages=USER)
                ok += 1
    assert ok >= 2 and "delegated" in info.value.body["error"]["message"]
    with anthropic.Anthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0) as c:
        with pytest.raises(anthropic.BadRequestError) as unknown:  # Anthropic's 400 for the chat routes' 422
            c.messages.create(
                model="plain", max_tokens=10, messages=USER, extra_headers={"X-LLM-Budget-Id": "no-such-chain"}
            )
    assert unknown.value.body["error"]["type"] == "invalid_request_error"
